"""A local identity provider: the issuer of the user JWTs the local gateway's JWT authorizer accepts.

In AWS the platform's identity provider (e.g. a Cognito user pool) signs the user tokens and the HTTP
API fetches its public keys from the issuer's `jwks_uri`. Locally one RS256 key pair is generated per
run; the gateway trusts its public key under its `kid`, and `issue_token` signs tokens for the demo,
`make dev` and the tests.
"""

import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

LOCAL_ISSUER = "https://idp.payedge.localhost"
LOCAL_AUDIENCE = "payedge-local-web"
TOKEN_LIFETIME_SECONDS = 3600


def _new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@dataclass
class LocalIdentityProvider:
    issuer: str = LOCAL_ISSUER
    audience: str = LOCAL_AUDIENCE
    key_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    _key: rsa.RSAPrivateKey = field(default_factory=_new_key, repr=False)

    def public_keys(self) -> dict[str, rsa.RSAPublicKey]:
        """The issuer's key set as the authorizer sees it: kid -> public key."""
        return {self.key_id: self._key.public_key()}

    def issue_token(
        self,
        claims: Mapping[str, Any] | None = None,
        *,
        lifetime_seconds: int = TOKEN_LIFETIME_SECONDS,
        key: rsa.RSAPrivateKey | None = None,
    ) -> str:
        """A signed RS256 JWT from this issuer for this audience; `claims` add to or override them.

        `key` signs with another key (under this issuer's kid) - how tests forge a bad signature.
        """
        now = int(time.time())
        payload: dict[str, Any] = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": "local-user",
            "iat": now,
            "nbf": now,
            "exp": now + lifetime_seconds,
            "jti": uuid.uuid4().hex,
        }
        payload.update(claims or {})
        payload = {name: value for name, value in payload.items() if value is not None}
        return jwt.encode(payload, key or self._key, algorithm="RS256", headers={"kid": self.key_id})


def new_signing_key() -> rsa.RSAPrivateKey:
    """A fresh RSA key nobody trusts (for forging tokens in tests)."""
    return _new_key()
