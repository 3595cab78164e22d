"""`make demo`: start the local stack, show what it does, stop it cleanly.

Each step is a small function taking the running stack; later features add their steps to STEPS. A step
that sees something unexpected raises DemoFailure, and the demo exits 1.
"""

import json
import sys
import warnings
from collections import Counter
from collections.abc import Callable

import requests

from local.stack import LocalStack


class DemoFailure(RuntimeError):
    """The local stack did not behave as the demo expects."""


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise DemoFailure(message)


def heading(number: int, title: str) -> None:
    print(f"\n== {number}. {title}")


def _user_token(stack: LocalStack) -> str:
    claim = stack.parameters.get("BusinessIdClaim", "business_id")
    return stack.issue_token({claim: "biz-demo"})


# ---------------------------------------------------------------------------------------------- steps


def show_resources(stack: LocalStack) -> None:
    source = stack.template_path.name
    print(f"Stack {stack.stack_name!r} created from {source} by CloudFormation (moto at {stack.endpoint_url}):")
    permissions = Counter(resource.type for resource in stack.resources if resource.type == "AWS::Lambda::Permission")
    for resource in stack.resources:
        if resource.type != "AWS::Lambda::Permission":
            physical = f" -> {resource.physical_id}" if resource.physical_id else ""
            print(f"  {resource.type:<28} {resource.logical_id}{physical}")
    for kind, count in permissions.items():
        print(f"  {kind:<28} {count} (one per HTTP route)")
    print("Not created by moto's CloudFormation:")
    for skipped in stack.skipped:
        print(f"  {skipped.type:<28} {skipped.logical_id:<40} {skipped.emulated_by or 'not emulated locally'}")
    expect(any(resource.logical_id == "RecordsTable" for resource in stack.resources), "no records table")


def list_providers(stack: LocalStack) -> None:
    token = _user_token(stack)
    response = requests.get(f"{stack.api_url}/providers", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    print(f"GET {stack.api_url}/providers  (Authorization: Bearer {token[:16]}...)")
    print(f"  -> {response.status_code}")
    expect(response.status_code == 200, f"listing providers answered {response.status_code}: {response.text}")
    for provider in response.json()["providers"]:
        webhooks = "webhooks" if provider["webhooks"] else "no webhooks"
        print(f"     {provider['provider']:<11} {provider['displayName']} ({webhooks})")


def refuse_request_without_token(stack: LocalStack) -> None:
    response = requests.get(f"{stack.api_url}/providers", timeout=10)
    print(f"GET {stack.api_url}/providers  (no Authorization header)")
    print(f"  -> {response.status_code} {response.text}  www-authenticate: {response.headers.get('www-authenticate')}")
    expect(response.status_code == 401, f"a request without a token answered {response.status_code}")


def fire_dispatch_schedule(stack: LocalStack) -> None:
    schedule = stack.scheduler.find("DispatchDueConnections")
    print(f"Schedule {schedule.name} ({schedule.expression}) delivers {schedule.input} to {schedule.function}")
    result = stack.scheduler.fire(schedule.name)
    print(f"  -> {json.dumps(result)}")
    expect(result.get("action") == "dispatch", f"unexpected dispatch result {result}")
    print(f"  {result.get('queued')} sync message(s) queued, one per connected connection, for the sync worker")


STEPS: list[tuple[str, Callable[[LocalStack], None]]] = [
    ("Resources created from template.yaml", show_resources),
    ("Providers listed through the local gateway with a JWT", list_providers),
    ("A request without a JWT is refused", refuse_request_without_token),
    ("The dispatch schedule fires", fire_dispatch_schedule),
]


def main() -> int:
    # Powertools warns on every invocation that records no metric; it is noise here.
    warnings.filterwarnings("ignore", message="No application metrics to publish")
    print("Starting the local stack...")
    try:
        # The template's LogLevel parameter keeps the functions' INFO logs out of the demo's output.
        with LocalStack(parameters={"LogLevel": "ERROR"}) as stack:
            for number, (title, step) in enumerate(STEPS, start=1):
                heading(number, title)
                step(stack)
    except DemoFailure as failure:
        print(f"\nDEMO FAILED: {failure}", file=sys.stderr)
        return 1
    print("\nLocal stack stopped cleanly.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
