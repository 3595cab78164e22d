"""Where the providers' machine-readable specs are, for the contract tests (docs/providers.md#specs).

`PAYEDGE_PROVIDER_SPECS` names a folder holding `quickbooks/`, `xero/` and `sage/`; unset, it is
`../shared/specs` beside the repository's root folder (where CI lays them next to its clone).

Missing specs skip the contract tests with a warning in the test summary saying where to put them (a
contract test that skips unnoticed proves nothing); a folder named in `PAYEDGE_PROVIDER_SPECS` that
lacks them fails them. `PAYEDGE_PROVIDER_SPECS=skip` skips them knowingly, also with a warning.
"""

import os
import warnings
from pathlib import Path

import pytest

ENV_VAR = "PAYEDGE_PROVIDER_SPECS"
SKIP = "skip"
REPOSITORY = Path(__file__).resolve().parents[2]
DEFAULT = REPOSITORY.parent / "shared" / "specs"


def spec_root() -> Path:
    configured = os.environ.get(ENV_VAR, "").strip()
    return Path(configured).expanduser() if configured else DEFAULT


def spec_dir(provider: str) -> Path:
    """The folder of `provider`'s specs. Absent: the calling test fails if `PAYEDGE_PROVIDER_SPECS` named
    the folder, else it is skipped with a warning saying where to put them."""
    if os.environ.get(ENV_VAR, "").strip().lower() == SKIP:
        reason = f"{provider} contract tests skipped: {ENV_VAR}={SKIP}"
        warnings.warn(reason, stacklevel=2)
        pytest.skip(reason)
    folder = spec_root() / provider
    if folder.is_dir():
        return folder
    message = (
        f"The {provider} provider specs are not in {folder}. Put the quickbooks/, xero/ and sage/ spec "
        f"folders (sources: docs/providers.md#specs) in {folder.parent} ({ENV_VAR}; unset, ../shared/specs "
        f"beside the repository), or set {ENV_VAR}={SKIP} to skip the contract tests knowingly."
    )
    if not os.environ.get(ENV_VAR):
        # A clone with no specs beside it: skipped, loudly (a warning in the summary), not failed.
        warnings.warn(message, stacklevel=2)
        pytest.skip(message)
    pytest.fail(message, pytrace=False)  # a folder named on purpose that lacks them
