import logging
from datetime import UTC, datetime, timedelta

import boto3
import pytest

from payedge_connect.observability import logger
from payedge_connect.tokens.vault import TokenSet, TokenVault

ACCESS = "eyJhbGciOi.access-token-value-0123456789"
REFRESH = "refresh-token-value-abcdefghijklmnop"


def a_token_set(access: str = ACCESS, refresh: str = REFRESH) -> TokenSet:
    now = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
    return TokenSet(
        access_token=access,
        refresh_token=refresh,
        access_token_expires_at=now + timedelta(minutes=30),
        refresh_token_expires_at=now + timedelta(days=60),
        scope=["offline_access", "accounting.invoices.read"],
    )


def test_tokens_round_trip_through_one_kms_encrypted_secret_per_connection(kms_key_arn: str) -> None:
    # Given a vault under the stack's secret prefix
    vault = TokenVault("payedge-test/", kms_key_arn)
    # When tokens are stored, then rotated
    vault.store("conn-1", a_token_set())
    vault.store("conn-1", a_token_set(access="new-access", refresh="new-refresh"))
    # Then a fresh read returns the newest, from a secret named for the connection and using the key
    loaded = vault.load("conn-1", fresh=True)
    assert loaded is not None
    assert loaded.access_token.get_secret_value() == "new-access"
    assert loaded.refresh_token.get_secret_value() == "new-refresh"
    assert loaded.refresh_token_expires_at == a_token_set().refresh_token_expires_at
    described = boto3.client("secretsmanager").describe_secret(SecretId="payedge-test/connections/conn-1")
    assert described["KmsKeyId"] == kms_key_arn
    assert vault.load("never-connected") is None


def test_a_connection_whose_secret_is_scheduled_for_deletion_has_no_tokens(kms_key_arn: str) -> None:
    vault = TokenVault("payedge-test/", kms_key_arn)
    vault.store("conn-1", a_token_set())
    vault.schedule_deletion("conn-1")
    vault.schedule_deletion("conn-1")  # twice is harmless
    assert vault.load("conn-1", fresh=True) is None


def test_token_values_never_reach_the_logs(
    kms_key_arn: str, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a vault and the service logger at its most verbose
    logger.setLevel(logging.DEBUG)
    vault = TokenVault("payedge-test/", kms_key_arn)
    # When tokens are stored, loaded, and the token set itself is logged by mistake
    with caplog.at_level(logging.DEBUG):
        vault.store("conn-1", a_token_set())
        tokens = vault.load("conn-1", fresh=True)
        logger.info("loaded tokens", extra={"tokens": tokens})
        logger.debug(f"tokens are {tokens!r} / {tokens}")
    # Then no log line, in any handler, carries either token value
    captured = capsys.readouterr()
    output = caplog.text + captured.out + captured.err
    assert "loaded tokens" in output
    assert ACCESS not in output
    assert REFRESH not in output
    assert ACCESS not in repr(tokens) and ACCESS not in str(tokens)
