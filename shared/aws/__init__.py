"""The only code that calls AWS APIs or reads the Lambda environment: configuration, secrets, the ESM event, boto3."""
