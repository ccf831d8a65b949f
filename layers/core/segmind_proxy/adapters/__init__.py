"""The ports made real: S3, the DynamoDB tables, SQS, Secrets Manager, the Segmind client, webhook delivery and the
Lambda extension. AWS's errors become `Outage`s here; the flows never see botocore's."""
