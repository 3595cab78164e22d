"""A property-based fuzz of the whole HTTP API from docs/openapi.json (Schemathesis, on Hypothesis).

Through the local gateway, every operation gets valid and invalid inputs, each request sent with the
business's valid JWT and again with a forged one; half the cases aim at a real connected connection so
they go past the ownership check. Fixed seed (derandomised), a bounded number of examples per operation.
Fails on any 5xx and on any answer the document does not describe (status, media type, schema, headers).
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import schemathesis
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from scripts.openapi import DOCUMENT

from .world import ConnectWorld

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore:No application metrics to publish")

EXAMPLES_PER_OPERATION = 6
BUSINESS = "biz-fuzz"
CHECKS: list[Callable[..., Any]] = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@dataclass
class Tally:
    cases: int = 0
    server_errors: list[str] = field(default_factory=list)
    mismatches: list[str] = field(default_factory=list)


def test_every_operation_answers_only_what_the_document_says_and_never_5xx(
    world: ConnectWorld, capsys: pytest.CaptureFixture[str]
) -> None:
    connection_id = world.connect("xero", BUSINESS)
    valid = {"Authorization": f"Bearer {world.token(BUSINESS)}"}
    forged_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = {"Authorization": f"Bearer {world.stack.issue_token({'business_id': BUSINESS}, key=forged_key)}"}
    schema = schemathesis.openapi.from_path(str(DOCUMENT))
    tally = Tally()

    def check(case: Any, headers: dict[str, str]) -> None:
        response = case.call(base_url=world.stack.api_url, headers=headers, timeout=20)
        tally.cases += 1
        label = f"{case.method} {case.formatted_path} -> {response.status_code}"
        if response.status_code >= 500:
            tally.server_errors.append(f"{label}: {response.text[:300]}")
            return
        try:
            case.validate_response(response, checks=CHECKS)
        except Exception as failure:  # every failing check, named
            tally.mismatches.append(f"{label}: {str(failure)[:500]}")

    operations = [result.ok() for result in schema.get_all_operations()]
    for operation in operations:
        strategies = [operation.as_strategy(generation_mode=mode) for mode in GenerationMode]
        if "connection_id" in operation.path_parameters:
            strategies += [
                operation.as_strategy(generation_mode=mode, path_parameters={"connection_id": connection_id})
                for mode in GenerationMode
            ]

        @settings(
            max_examples=EXAMPLES_PER_OPERATION * len(strategies),
            derandomize=True,
            database=None,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=st.one_of(strategies))
        def fuzz(case: Any) -> None:
            check(case, valid)
            check(case, forged)

        fuzz()

    with capsys.disabled():
        print(
            f"\nAPI fuzz: {len(operations)} operations, {tally.cases} cases, "
            f"{len(tally.server_errors)} server errors, {len(tally.mismatches)} schema mismatches"
        )
    assert not tally.server_errors, "\n".join(tally.server_errors[:20])
    assert not tally.mismatches, "\n".join(tally.mismatches[:20])
    assert tally.cases >= len(operations) * EXAMPLES_PER_OPERATION
