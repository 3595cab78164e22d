"""PayEdge Connect: the code shared by every function, shipped as the Lambda layer.

Where things are:
- settings.py          each function's configuration, validated once from the environment
- observability.py     logger, tracer and metrics (AWS Lambda Powertools)
- models.py            the canonical records: Connection, Payable, Vendor, PaymentOrder, SyncRun
- errors.py            domain errors (each becomes a problem document in api/problems.py)
- services.py          the clients a function uses, built from its settings on first use
- storage/             the only code touching the DynamoDB records table: __init__.py (the whole key
                       design, RecordsStore), one store per aggregate: connections.py, payables.py,
                       syncs.py, payment_orders.py, leases.py (and heartbeats), budgets.py; table.py
- tokens/              vault.py (Secrets Manager), oauth.py (requests-oauthlib), refresh.py (one refresh
                       across Lambdas; what happens when a refresh token is revoked)
- connections/         authorization.py (OAuth start and the callback pipeline), mapping.py, manage.py
- providers/           base.py (the connector Protocol), http.py (retries, rate budget), registry.py,
                       quickbooks/ xero/ sage/ (connector, wire models, bills.py, payments.py)
- sync/                engine.py, requests.py, dispatch.py, webhooks.py, documents.py
- writeback/           service.py (checks, staleness, exactly once), events.py, queue.py
- api/                 problem documents, the caller's business id
"""
