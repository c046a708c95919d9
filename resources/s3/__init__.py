"""S3: :mod:`.urls` parses every S3 URL form (and the allow-lists of buckets and prefixes) without
I/O; :mod:`.client` builds the boto3 client with timeouts and retries from the environment."""
