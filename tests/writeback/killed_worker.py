"""A write-back worker in an OS process of its own (a Lambda), sharing nothing with the test but DynamoDB
(the moto server), Secrets Manager and the provider's sandbox: it is killed mid-posting."""

import json
import os
from typing import Any

import boto3

from payedge_connect.services import Services
from payedge_connect.settings import SyncSettings
from payedge_connect.writeback.service import process_payments


def run_worker(endpoint: str, settings: dict[str, Any], connection_id: str, number: str) -> None:
    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": endpoint,
        }
    )
    boto3.setup_default_session()
    # The settings as the function's environment holds them: JSON values as text.
    environment = {name: json.dumps(v) if isinstance(v, dict | list) else v for name, v in settings.items()}
    services = Services(SyncSettings.model_validate(environment))
    process_payments(services, connection_id, [number], bus_name="default")
