"""Logger, tracer and metrics for every function, in one place.

The service name comes from POWERTOOLS_SERVICE_NAME (set per function in template.yaml).
"""

import logging

from aws_lambda_powertools import Logger, Metrics, Tracer

logger = Logger()
tracer = Tracer()
metrics = Metrics()

# These libraries log whole requests and responses at DEBUG - Secrets Manager bodies and token
# endpoint replies included - so they never go below INFO, whatever LOG_LEVEL the stack runs at.
for _wire_logger in ("botocore", "boto3", "urllib3", "requests_oauthlib", "oauthlib"):
    logging.getLogger(_wire_logger).setLevel(logging.INFO)
