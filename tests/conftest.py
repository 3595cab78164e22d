"""Shared fixtures: AWS through moto in-process, resources shaped as template.yaml declares them."""

import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from cfnlint.decode import cfn_yaml
from moto import mock_aws
from moto.core.botocore_stubber import BotocoreStubber

from local.sandboxes.generator import generate_ledger
from local.stack import MotoServer
from local.worlds import ALL_PROVIDERS, SyncWorld, connect, create_records_table
from payedge_connect.observability import metrics

TEMPLATE = Path(__file__).resolve().parents[1] / "template.yaml"
REGION = "us-east-1"


@pytest.fixture(scope="session")
def template() -> dict[str, Any]:
    return dict(cfn_yaml.load(str(TEMPLATE)))


def _one_request_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Serialise moto's request handling: DynamoDB applies a conditional write atomically, moto does
    not, and tests with many threads (concurrent refreshes, leases) depend on that atomicity."""
    lock = threading.Lock()
    original = BotocoreStubber.__call__

    def serialised(self: BotocoreStubber, *args: object, **kwargs: object) -> object:
        with lock:
            return original(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(BotocoreStubber, "__call__", serialised)


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fake credentials and moto for the duration of one test; no real AWS call can escape."""
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    _one_request_at_a_time(monkeypatch)
    with mock_aws():
        yield


@pytest.fixture
def moto_server(template: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, str]]:
    """AWS as a moto server, which other OS processes can reach: its endpoint, and a records table of the
    test's own (moto's backends outlive one server in this process)."""
    server = MotoServer("127.0.0.1", 0)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ENDPOINT_URL": endpoint,
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    boto3.setup_default_session()
    try:
        yield endpoint, create_records_table(template, name=f"records-{uuid.uuid4().hex[:8]}")
    finally:
        server.stop()


@pytest.fixture
def records_table(aws: None, template: dict[str, Any]) -> str:
    """The records table with the key schema and indexes template.yaml gives it."""
    return create_records_table(template)


@pytest.fixture
def kms_key_arn(aws: None) -> str:
    return boto3.client("kms", region_name=REGION).create_key()["KeyMetadata"]["Arn"]


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Remove the functions' variables so a settings test sees only what it sets."""
    for name in list(os.environ):
        if name.endswith(("_TABLE_NAME", "_QUEUE_URL", "_BUCKET_NAME", "_BUS_NAME", "_URL", "_URLS")) or name in {
            "SECRET_NAME_PREFIX",
            "STACK_KMS_KEY_ARN",
            "BUSINESS_ID_CLAIM",
            "XERO_SCOPE_SET",
            "XERO_DAILY_CALL_LIMIT",
            "FUNDING_SOURCES",
        }:
            monkeypatch.delenv(name)


@pytest.fixture(autouse=True)
def metrics_of_one_invocation() -> Iterator[None]:
    """Each test is one invocation for Powertools metrics, which a Lambda flushes at its end: without
    this the values of every test pile up, and the 100th flushes (and raises) with no namespace set."""
    yield
    metrics.clear_metrics()


@pytest.fixture(autouse=True)
def loopback_oauth(monkeypatch: pytest.MonkeyPatch) -> None:
    # oauthlib refuses plain http; the sandboxes listen on loopback without TLS.
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")


@pytest.fixture
def documents_bucket(aws: None) -> str:
    boto3.client("s3").create_bucket(Bucket="documents")
    return "documents"


@pytest.fixture(params=ALL_PROVIDERS, ids=lambda provider: provider.value)
def world(
    request: pytest.FixtureRequest, records_table: str, kms_key_arn: str, documents_bucket: str
) -> Iterator[SyncWorld]:
    """A connected organisation of each provider with a small ledger (every bill state, a few documents)."""
    ledger = generate_ledger(seed=11, bills=40, vendors=12, documents=4)
    with connect(request.param, ledger, table=records_table, kms_key_arn=kms_key_arn, bucket=documents_bucket) as world:
        yield world
