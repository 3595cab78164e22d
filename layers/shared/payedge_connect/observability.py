"""Logger, tracer and metrics for every function, in one place.

The service name comes from POWERTOOLS_SERVICE_NAME (set per function in template.yaml).
"""

from aws_lambda_powertools import Logger, Metrics, Tracer

logger = Logger()
tracer = Tracer()
metrics = Metrics()
