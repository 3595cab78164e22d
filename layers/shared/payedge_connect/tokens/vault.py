"""OAuth tokens in Secrets Manager: one secret per connection, encrypted with the stack's KMS key.

Token values are `SecretStr` everywhere in memory, so a log line, a repr or an error message shows
'**********' instead of the token. The only place they are unwrapped is the secret's JSON below and
the Authorization header a provider session builds.
"""

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any

import boto3
from pydantic import BaseModel, ConfigDict, SecretStr

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.parameters import SecretsProvider
    from mypy_boto3_secretsmanager import SecretsManagerClient

# Tokens read without a refresh may come from a short cache; a refresh always reads the secret fresh.
_READ_CACHE_SECONDS = 30
_DELETION_RECOVERY_DAYS = 7


def _marked_for_deletion(error: Exception) -> bool:
    # AWS says "marked for deletion"; moto says "marked deleted". Either way the secret is gone.
    return any(words in str(error) for words in ("marked for deletion", "marked deleted"))


class TokenSet(BaseModel):
    """What a provider's token endpoint gave us, plus when each token stops working."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    access_token: SecretStr
    refresh_token: SecretStr
    access_token_expires_at: datetime
    refresh_token_expires_at: datetime | None = None
    # QuickBooks' 5-year cap (x_refresh_token_hard_expires_in); None where the provider has none.
    refresh_token_hard_expires_at: datetime | None = None
    scope: list[str] = []
    # Set when the provider answered invalid_grant: nobody asks it again until the user reconnects.
    grant_revoked: bool = False


def _to_secret_string(tokens: TokenSet) -> str:
    document: dict[str, Any] = tokens.model_dump(mode="json")
    document["access_token"] = tokens.access_token.get_secret_value()
    document["refresh_token"] = tokens.refresh_token.get_secret_value()
    return json.dumps(document)


class TokenVault:
    def __init__(
        self,
        secret_name_prefix: str,
        kms_key_id: str,
        *,
        client: "SecretsManagerClient | None" = None,
    ) -> None:
        self._prefix = secret_name_prefix
        self._kms_key_id = kms_key_id
        self._client: SecretsManagerClient | None = client
        self._reader: SecretsProvider | None = None

    @property
    def client(self) -> "SecretsManagerClient":
        if self._client is None:
            self._client = boto3.client("secretsmanager")
        return self._client

    @property
    def reader(self) -> "SecretsProvider":
        # Powertools' parameters utility is imported with the first secret read: a function that reads
        # no tokens (most HTTP reads) never loads it.
        from aws_lambda_powertools.utilities.parameters import SecretsProvider  # noqa: PLC0415

        if self._reader is None:
            self._reader = SecretsProvider(boto3_client=self.client)
        return self._reader

    def secret_name(self, connection_id: str) -> str:
        return f"{self._prefix}connections/{connection_id}"

    def store(self, connection_id: str, tokens: TokenSet) -> None:
        """Save the connection's tokens as the secret's current version (creating the secret once)."""
        name = self.secret_name(connection_id)
        secret_string = _to_secret_string(tokens)
        try:
            self.client.put_secret_value(SecretId=name, SecretString=secret_string)
        except self.client.exceptions.ResourceNotFoundException:
            self.client.create_secret(
                Name=name,
                KmsKeyId=self._kms_key_id,
                SecretString=secret_string,
                Description="OAuth tokens of one PayEdge Connect connection",
                Tags=[{"Key": "payedge:connection-id", "Value": connection_id}],
            )

    def load(self, connection_id: str, *, fresh: bool = False) -> TokenSet | None:
        """The connection's tokens, or None if it has none (never connected, or disconnected)."""
        from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError  # noqa: PLC0415

        try:
            document = self.reader.get(
                self.secret_name(connection_id),
                transform="json",
                max_age=_READ_CACHE_SECONDS,
                force_fetch=fresh,
            )
        except GetParameterError as error:
            if "ResourceNotFoundException" in str(error) or _marked_for_deletion(error):
                return None
            raise
        return TokenSet.model_validate(document)

    def schedule_deletion(self, connection_id: str) -> None:
        """Delete the secret after the recovery window (a mistaken disconnect can still be undone)."""
        try:
            self.client.delete_secret(
                SecretId=self.secret_name(connection_id),
                RecoveryWindowInDays=_DELETION_RECOVERY_DAYS,
            )
        except self.client.exceptions.ResourceNotFoundException:
            return  # never stored: nothing to delete
        except self.client.exceptions.InvalidRequestException as error:
            if not _marked_for_deletion(error):
                raise
