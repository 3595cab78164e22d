"""Where the providers' machine-readable specs are: `shared/specs/` beside the repository (as in CI), or
this workplace's shared folder when the clone lives elsewhere.

A clone with neither skips the contract tests locally; in CI (CI=true) a missing spec folder fails the
run instead, so a contract test is never skipped silently there.
"""

import os
from pathlib import Path

import pytest

CANDIDATES = (Path(__file__).resolve().parents[3] / "shared" / "specs", Path("/work/shared/specs"))


def spec_dir(provider: str) -> Path:
    for root in CANDIDATES:
        if (root / provider).is_dir():
            return root / provider
    message = f"{provider} specs not found in {', '.join(str(root) for root in CANDIDATES)}"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)
