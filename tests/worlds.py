"""The worlds tests start from live in local/worlds.py (the benchmarks use them too)."""

from local.worlds import (
    ALL_PROVIDERS,
    API_BASE_URL,
    CLIENT_ID,
    CLIENT_SECRET,
    SECRET_PREFIX,
    WEBHOOK_KEY,
    SyncWorld,
    connect,
    consent,
    new_sandbox,
    reconnect,
)

__all__ = [
    "ALL_PROVIDERS",
    "API_BASE_URL",
    "CLIENT_ID",
    "CLIENT_SECRET",
    "SECRET_PREFIX",
    "WEBHOOK_KEY",
    "SyncWorld",
    "connect",
    "consent",
    "new_sandbox",
    "reconnect",
]
