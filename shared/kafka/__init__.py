"""The only code that talks to Kafka: clients per cluster, data-path producers, groups, admin sync, MirrorClient."""
