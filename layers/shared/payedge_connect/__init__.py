"""PayEdge Connect: the code shared by every function, shipped as the Lambda layer.

Where things are:
- settings.py          each function's configuration, validated once from the environment
- observability.py     logger, tracer and metrics (AWS Lambda Powertools)
- models.py            the canonical records: Connection, Payable, Vendor, PaymentOrder, SyncRun
- storage/records.py   the only code touching the DynamoDB records table
- tokens/vault.py      OAuth tokens in Secrets Manager, one secret per connection
- api/                 HTTP API plumbing: problem documents, the caller's business id
- providers/           the supported accounting packages
"""
