"""Local Kafka brokers for running and testing Serverless MirrorMaker without AWS or Docker."""
