"""`make demo`: start the provider sandboxes and the local stack, show what they do, stop them cleanly.

Each step is a small function taking the running demo (stack and sandboxes); later features add their steps
to STEPS. A step that sees something unexpected raises DemoFailure, and the demo exits 1.
"""

import json
import os
import sys
import time
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from functools import partial
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import requests

from local.provider_apps import allow_plain_http_oauth, app_secret_name, register_provider_apps, sandbox_parameters
from local.sandboxes.fleet import PROVIDERS, ProviderName, SandboxFleet
from local.stack import LocalStack

BUSINESS = "biz-demo"
SOFTWARE: dict[ProviderName, str] = {"quickbooks": "QuickBooks Online", "xero": "Xero", "sage": "Sage Accounting"}


class DemoFailure(RuntimeError):
    """The local stack did not behave as the demo expects."""


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise DemoFailure(message)


def heading(number: int, title: str) -> None:
    print(f"\n== {number}. {title}")


@dataclass(frozen=True)
class Demo:
    stack: LocalStack
    fleet: SandboxFleet
    # Bills paid in the demo, per connection, for the sync that follows.
    paid: dict[str, list[str]] = field(default_factory=dict)


def _user_token(stack: LocalStack) -> str:
    claim = stack.parameters.get("BusinessIdClaim", "business_id")
    return stack.issue_token({claim: BUSINESS})


def _api(stack: LocalStack, method: str, path: str, body: Any = None) -> requests.Response:
    """A call of the web app: through the local gateway, with the user's JWT."""
    headers = {"Authorization": f"Bearer {_user_token(stack)}"}
    return requests.request(method, f"{stack.api_url}{path}", json=body, headers=headers, timeout=10)


def _short(url: str) -> str:
    """A URL for a person: where it goes and the names of its query parameters (values are long)."""
    parts = urlsplit(url)
    names = "&".join(name for name, _ in parse_qsl(parts.query))
    return f"{parts.scheme}://{parts.netloc}{parts.path}" + (f"?{names}" if names else "")


# ---------------------------------------------------------------------------------------------- steps


def show_resources(demo: Demo) -> None:
    stack = demo.stack
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


def list_providers(demo: Demo) -> None:
    stack = demo.stack
    token = _user_token(stack)
    response = requests.get(f"{stack.api_url}/providers", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    print(f"GET {stack.api_url}/providers  (Authorization: Bearer {token[:16]}...)")
    print(f"  -> {response.status_code}")
    expect(response.status_code == 200, f"listing providers answered {response.status_code}: {response.text}")
    for provider in response.json()["providers"]:
        webhooks = "webhooks" if provider["webhooks"] else "no webhooks"
        print(f"     {provider['provider']:<11} {provider['displayName']} ({webhooks})")


def refuse_request_without_token(demo: Demo) -> None:
    stack = demo.stack
    response = requests.get(f"{stack.api_url}/providers", timeout=10)
    print(f"GET {stack.api_url}/providers  (no Authorization header)")
    print(f"  -> {response.status_code} {response.text}  www-authenticate: {response.headers.get('www-authenticate')}")
    expect(response.status_code == 401, f"a request without a token answered {response.status_code}")


def fire_dispatch_schedule(demo: Demo) -> None:
    stack = demo.stack
    schedule = stack.scheduler.find("DispatchDueConnections")
    print(f"Schedule {schedule.name} ({schedule.expression}) delivers {schedule.input} to {schedule.function}")
    result = stack.scheduler.fire(schedule.name)
    print(f"  -> {json.dumps(result)}")
    expect(result.get("action") == "dispatch", f"unexpected dispatch result {result}")
    print(f"  {result.get('queued')} sync message(s) queued, one per connected connection, for the sync worker")


def register_provider_app_credentials(demo: Demo) -> None:
    register_provider_apps(demo.stack, demo.fleet)
    for provider in PROVIDERS:
        app = demo.fleet.credentials[provider]
        print(f"  {SOFTWARE[provider]:<18} sandbox {demo.fleet.base_urls[provider]}")
        print(f"  {'':<18} secret  {app_secret_name(demo.stack, provider)}  (clientId {app.client_id})")
        print(f"  {'':<18} redirect URI {demo.fleet.redirect_uris[provider][0]}")
    print(f"  ProviderBaseUrls = {demo.stack.parameters['ProviderBaseUrls']}")


def _connect(demo: Demo, provider: ProviderName) -> None:
    """A user connecting `provider` from the integrations page, the consent page approved headlessly."""
    stack = demo.stack
    started = _api(stack, "POST", "/connections", {"provider": provider})
    expect(started.status_code == 201, f"POST /connections answered {started.status_code}: {started.text}")
    connection_id, authorization_url = started.json()["connectionId"], started.json()["authorizationUrl"]
    print(f"POST /connections {{'provider': '{provider}'}} -> 201 {started.json()['status']}")
    consent = requests.get(authorization_url, allow_redirects=False, timeout=10)
    expect(consent.status_code in (302, 303), f"the consent page answered {consent.status_code}")
    print(f"  consent page {_short(authorization_url).split('?')[0]} -> approved (headless)")
    callback = requests.get(consent.headers["Location"], allow_redirects=False, timeout=10)
    web_app = urlsplit(callback.headers.get("Location", ""))
    back = dict(parse_qsl(web_app.query))
    print(f"  redirect to {_short(consent.headers['Location'])} (no JWT)")
    print(f"    -> {callback.status_code} to the web app, outcome={back.get('outcome')}")
    expect(back.get("connectionId") == connection_id, f"the callback ended with {back}")
    # The web app redeems the completion code (the redirect's fragment) with its user's JWT.
    code = dict(parse_qsl(web_app.fragment)).get("completionCode", "")
    redeemed = _api(stack, "POST", f"/connections/{connection_id}/authorization", {"completionCode": code})
    expect(redeemed.status_code == 200, f"redeeming the authorization answered {redeemed.status_code}: {redeemed.text}")
    back = redeemed.json()
    print(f"  POST /connections/…/authorization (the web app, with the JWT) -> outcome={back['outcome']}")

    if back.get("outcome") == "choosing_tenant":
        tenants = _api(stack, "GET", f"/connections/{connection_id}/tenants").json()["tenants"]
        print(f"  the grant reaches {len(tenants)} organisations: {', '.join(t['name'] for t in tenants)}")
        chosen = tenants[-1]
        response = _api(stack, "PUT", f"/connections/{connection_id}/tenant", {"tenantId": chosen["tenantId"]})
        expect(response.status_code == 200, f"choosing the organisation answered {response.status_code}")
        print(f"  PUT /connections/…/tenant {chosen['name']!r} -> {response.json()['status']}")
    else:
        expect(back.get("outcome") == "mapping_required", f"the callback ended with {back}")

    proposal = _api(stack, "GET", f"/connections/{connection_id}/mapping")
    expect(proposal.status_code == 200, f"the mapping proposal answered {proposal.status_code}: {proposal.text}")
    names = _account_names(proposal.json())
    acceptance = {
        "accepted": True,
        "fundingSources": {
            source["fundingSource"]: source["proposedAccountId"]
            for source in proposal.json()["fundingSources"]
            if source["proposedAccountId"]
        },
        "feeAccountId": proposal.json()["feeAccount"]["proposedAccountId"],
    }
    accepted = _api(stack, "PUT", f"/connections/{connection_id}/mapping", acceptance)
    expect(accepted.status_code == 200, f"accepting the mapping answered {accepted.status_code}: {accepted.text}")
    print(f"  GET /connections/…/mapping, PUT /connections/…/mapping (accepted) -> {accepted.json()['status']}")

    shown = _api(stack, "GET", f"/connections/{connection_id}").json()
    expect(shown["status"] == "connected", f"the connection is {shown['status']}")
    print(f"  Organisation  {shown['organisationName']}")
    print(f"  Status        {shown['status']}")
    mapping = shown["mapping"]
    lines = [(source, names.get(account, account)) for source, account in mapping["fundingSources"].items()]
    fee = mapping["feeAccountId"]
    lines.append(("fees", names.get(fee, fee) if fee else "none"))
    for index, (what, account_name) in enumerate(lines):
        print(f"  {'Mapping' if index == 0 else '':<13} {what:<14} -> {account_name}")
    expect(set(mapping["fundingSources"]) == {"cad-operating", "usd-operating"}, f"mapping {mapping}")


def _account_names(proposal: dict[str, Any]) -> dict[str, str]:
    candidates = [c for source in proposal["fundingSources"] for c in source["candidates"]]
    candidates += proposal["feeAccount"]["candidates"]
    return {candidate["accountId"]: candidate["name"] for candidate in candidates}


def connect_quickbooks(demo: Demo) -> None:
    _connect(demo, "quickbooks")


def connect_xero(demo: Demo) -> None:
    _connect(demo, "xero")


def connect_sage(demo: Demo) -> None:
    _connect(demo, "sage")


def list_connections(demo: Demo) -> None:
    listed = _api(demo.stack, "GET", "/connections").json()["connections"]
    print(f"GET /connections ({BUSINESS}) -> {len(listed)} connection(s)")
    for item in listed:
        print(f"  {item['accountingSoftware']:<18} {item['organisationName']:<28} {item['status']}")
    expect(sorted(item["provider"] for item in listed) == sorted(PROVIDERS), "not every provider is listed")
    expect(all(item["status"] == "connected" for item in listed), "a connection is not connected")


# ---------------------------------------------------------------------------------------------- sync


def _wait_for(what: str, check: Callable[[], Any], seconds: float = 90.0) -> Any:
    """Poll until `check` returns something truthy (the queue pollers work in the background)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.2)
    raise DemoFailure(f"timed out waiting for {what}")


def _connections(demo: Demo) -> list[dict[str, Any]]:
    return list(_api(demo.stack, "GET", "/connections").json()["connections"])


def _latest_finished_sync(demo: Demo, connection_id: str) -> dict[str, Any] | None:
    runs = _api(demo.stack, "GET", f"/connections/{connection_id}/sync-runs?limit=1").json()["syncRuns"]
    return dict(runs[0]) if runs and runs[0]["outcome"] != "running" else None


def _finished_sync(demo: Demo, connection_id: str, sync_run_id: str) -> dict[str, Any] | None:
    run = _api(demo.stack, "GET", f"/connections/{connection_id}/sync-runs/{sync_run_id}").json()
    return dict(run) if run["outcome"] != "running" else None


def _settled_payment(demo: Demo, connection_id: str, number: str) -> dict[str, Any] | None:
    response = _api(demo.stack, "GET", f"/connections/{connection_id}/payments/{number}")
    if response.status_code == 404:
        return None  # the event is still on its way through the bus and the queue
    order = response.json()
    return dict(order) if order["status"] not in ("received", "posting") else None


def _every(demo: Demo, path: str, key: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = ""
    while True:
        page = _api(demo.stack, "GET", f"{path}{'&' if '?' in path else '?'}limit=100{cursor}").json()
        items.extend(page[key])
        if not page.get("nextCursor"):
            return items
        cursor = f"&cursor={page['nextCursor']}"


def _print_sync(demo: Demo, connection: dict[str, Any], run: dict[str, Any]) -> None:
    connection_id = connection["connectionId"]
    payables = _every(demo, f"/connections/{connection_id}/payables?status=open", "payables")
    part_paid = _every(demo, f"/connections/{connection_id}/payables?status=part_paid", "payables")
    vendors = _every(demo, f"/connections/{connection_id}/vendors", "vendors")
    attention = [vendor for vendor in vendors if vendor["attentionRequired"]]
    counts = run["counts"]
    print(
        f"  {connection['accountingSoftware']:<18} {run['mode']:<11} {run['outcome']:<9} "
        f"bills open {len(payables)} (+{len(part_paid)} part-paid)  vendors {len(vendors)} "
        f"({len(attention)} need attention)  documents {counts['documentsStored']}  "
        f"closed {counts['billsClosed']}  provider calls {run['providerCalls']}"
    )
    expect(run["outcome"] in ("succeeded", "partial"), f"the sync of {connection['accountingSoftware']} {run}")


def show_scheduled_syncs(demo: Demo) -> None:
    print("The sync worker takes each queued message (SQS event source) and syncs the organisation:")
    for connection in _connections(demo):
        run = _wait_for("a sync to finish", partial(_latest_finished_sync, demo, connection["connectionId"]))
        _print_sync(demo, connection, run)
    first = _connections(demo)[0]
    sample = _every(demo, f"/connections/{first['connectionId']}/payables?status=open", "payables")[0]
    print(f"  e.g. GET /connections/…/payables?status=open ({first['accountingSoftware']}):")
    print(
        f"       {sample['vendorName']} · {sample['currency']} {sample['amountDue']} due of {sample['totalAmount']}"
        f" · invoice {sample['invoiceNumber']} · due {sample['dueDate']} · document "
        f"{'yes' if sample['document'] else 'none'}"
    )


# ---------------------------------------------------------------------------------------------- write-back


def _provider_bill(demo: Demo, provider: ProviderName, tenant: str, bill_id: str) -> str:
    """The bill as the sandbox's own ledger holds it (what the business sees in its accounting software)."""
    if provider == "quickbooks":
        bill = next(b for b in demo.fleet.quickbooks.bills(tenant) if b["Id"] == bill_id)
        return f"Balance {bill['Balance']} of {bill['TotalAmt']}" + (
            " (Paid)" if Decimal(str(bill["Balance"])) == 0 else ""
        )
    if provider == "xero":
        invoice = next(i for i in demo.fleet.xero.invoices(tenant) if i["InvoiceID"] == bill_id)
        return f"Status {invoice['Status']}, AmountDue {invoice['AmountDue']} of {invoice['Total']}"
    invoice = next(i for i in demo.fleet.sage.purchase_invoices(tenant) if i["id"] == bill_id)
    return f"status {invoice['status']['id']}, outstanding {invoice['outstanding_amount']} of {invoice['total_amount']}"


def pay_two_bills_per_provider(demo: Demo) -> None:
    """The platform pays bills and publishes PaymentCompleted on its bus; the rule queues them for write-back."""
    events = demo.stack.client("events")
    for connection in _connections(demo):
        connection_id, provider = connection["connectionId"], connection["provider"]
        payables = _every(demo, f"/connections/{connection_id}/payables?status=open", "payables")
        home = next(p for p in payables if p["currency"] == "CAD")
        foreign = next((p for p in payables if p["currency"] == "USD"), None)
        expect(foreign is not None, f"no open USD bill at {provider} to pay in a foreign currency")
        assert foreign is not None
        orders = [
            (home, f"PO-{provider[:2].upper()}-1001", home["amountDue"], "2.50", None),
            (
                foreign,
                f"PO-{provider[:2].upper()}-1002",
                str((Decimal(foreign["amountDue"]) / 2).quantize(Decimal("0.01"))),
                None,
                "1.3725",
            ),
        ]
        print(f"  {connection['accountingSoftware']} ({connection['organisationName']})")
        for payable, number, amount, fee, rate in orders:
            detail = {
                "businessId": BUSINESS,
                "connectionId": connection_id,
                "paymentOrderNumber": number,
                "billId": payable["billId"],
                "vendorName": payable["vendorName"],
                "currency": payable["currency"],
                "amount": amount,
                "remittanceNote": "Paid through PayEdge",
                "invoiceNumber": payable["invoiceNumber"],
                "paymentStatus": "completed",
                "paymentDate": datetime.now(UTC).date().isoformat(),
                "feeAmount": fee,
                "fundingSource": f"{payable['currency'].lower()}-operating",
                "exchangeRate": rate,
            }
            events.put_events(
                Entries=[
                    {
                        "Source": "payedge.payments",
                        "DetailType": "PaymentCompleted",
                        "Detail": json.dumps(detail),
                        "EventBusName": "default",
                    }
                ]
            )
        for payable, number, amount, fee, rate in orders:
            order = _wait_for(f"payment {number}", partial(_settled_payment, demo, connection_id, number))
            kind = "fee " + fee if fee else f"partial, rate {rate}"
            print(
                f"    {number}  {payable['currency']} {amount} ({kind})  -> {order['status']}"
                f"  payment {order['providerPaymentId']}" + (f", fee {order['providerFeeId']}" if fee else "")
            )
            expect(order["status"] == "posted", f"{number} was not posted: {order.get('reason')}")
            tenant = demo.fleet.tenant_ids[provider][0] if provider != "xero" else _xero_tenant(demo, connection)
            at_provider = _provider_bill(demo, provider, tenant, payable["billId"])
            print(f"      in {connection['accountingSoftware']}: {at_provider}")
        demo.paid[connection_id] = [payable["billId"] for payable, *_ in orders]


def _xero_tenant(demo: Demo, connection: dict[str, Any]) -> str:
    names = {demo.fleet.xero.organisation(t).name: t for t in demo.fleet.tenant_ids["xero"]}
    return names[connection["organisationName"]]


def next_sync_closes_paid_bills(demo: Demo) -> None:
    for connection in _connections(demo):
        connection_id = connection["connectionId"]
        started = _api(demo.stack, "POST", f"/connections/{connection_id}/sync").json()
        run = _wait_for("the sync", partial(_finished_sync, demo, connection_id, started["syncRunId"]))
        _print_sync(demo, connection, run)
        for bill_id in demo.paid[connection_id]:
            payable = _api(demo.stack, "GET", f"/connections/{connection_id}/payables/{bill_id}").json()
            reason = f" ({payable['closedReason']})" if payable["closedReason"] else ""
            print(
                f"      bill {bill_id}: {payable['status']}{reason}, {payable['currency']} {payable['amountDue']} due"
            )
            expect(payable["status"] in ("closed", "part_paid"), f"bill {bill_id} is still {payable['status']}")


def _undone_payment(demo: Demo, connection_id: str, number: str) -> dict[str, Any] | None:
    order = _api(demo.stack, "GET", f"/connections/{connection_id}/payments/{number}").json()
    return dict(order) if order["status"] not in ("posted", "reversing") else None


def reverse_one_payment_per_provider(demo: Demo) -> None:
    """The platform reports a payment returned (an ACH return) with PaymentReversed on its bus: the payment
    and its fee are undone in the accounting software, and the bill is open again there and here."""
    events = demo.stack.client("events")
    for connection in _connections(demo):
        connection_id, provider = connection["connectionId"], connection["provider"]
        number, bill_id = f"PO-{provider[:2].upper()}-1001", demo.paid[connection_id][0]
        detail = {
            "businessId": BUSINESS,
            "connectionId": connection_id,
            "paymentOrderNumber": number,
            "reason": "ACH return R01: insufficient funds",
            "reversalDate": datetime.now(UTC).date().isoformat(),
        }
        events.put_events(
            Entries=[
                {
                    "Source": "payedge.payments",
                    "DetailType": "PaymentReversed",
                    "Detail": json.dumps(detail),
                    "EventBusName": "default",
                }
            ]
        )
        order = _wait_for(f"reversal of {number}", partial(_undone_payment, demo, connection_id, number))
        undone = "voided" if provider == "quickbooks" else "deleted"
        print(f"  {connection['accountingSoftware']}: {number} -> {order['status']}")
        print(f"    payment {order['providerPaymentId']} {undone}, fee {order['providerFeeId']} deleted there")
        expect(order["status"] == "reversed", f"{number} was not reversed: {order.get('reason')}")
        tenant = demo.fleet.tenant_ids[provider][0] if provider != "xero" else _xero_tenant(demo, connection)
        print(f"    in {connection['accountingSoftware']}: {_provider_bill(demo, provider, tenant, bill_id)}")
        payable = _api(demo.stack, "GET", f"/connections/{connection_id}/payables/{bill_id}").json()
        print(f"    here: bill {bill_id} {payable['status']}, {payable['currency']} {payable['amountDue']} due")
        expect(payable["status"] == "open", f"bill {bill_id} did not reopen: {payable['status']}")


STEPS: list[tuple[str, Callable[[Demo], None]]] = [
    ("Resources created from template.yaml", show_resources),
    ("Providers listed through the local gateway with a JWT", list_providers),
    ("A request without a JWT is refused", refuse_request_without_token),
    (
        "Provider apps registered as an operator would (credentials in Secrets Manager)",
        register_provider_app_credentials,
    ),
    ("QuickBooks Online connected through its consent page", connect_quickbooks),
    ("Xero connected through its consent page (two organisations: the user chooses)", connect_xero),
    ("Sage Accounting connected through its consent page", connect_sage),
    ("The integrations page lists the connections", list_connections),
    ("The dispatch schedule fires", fire_dispatch_schedule),
    ("Each organisation's unpaid bills and their vendors are synced", show_scheduled_syncs),
    (
        "The platform pays two bills per provider (a fee, a foreign currency, a partial payment)",
        pay_two_bills_per_provider,
    ),
    ("The next sync closes what was paid", next_sync_closes_paid_bills),
    (
        "The platform reverses one payment per provider: undone there, the bill open again",
        reverse_one_payment_per_provider,
    ),
]


def main() -> int:
    # Powertools warns on every invocation that records no metric; it is noise here.
    warnings.filterwarnings("ignore", message="No application metrics to publish")
    # The functions' CloudWatch metrics (EMF lines on stdout) are for CloudWatch, not for a person.
    os.environ["POWERTOOLS_METRICS_DISABLED"] = "true"
    print("Starting the provider sandboxes and the local stack...")
    # The sandboxes speak plain http on loopback, which oauthlib refuses unless told (functions run in-process).
    allow_plain_http_oauth()
    try:
        # Consent pages approve headlessly; the stack's connectors point at the sandboxes (ProviderBaseUrls).
        # The template's LogLevel parameter keeps the functions' INFO logs out of the demo's output.
        with (
            SandboxFleet(auto_approve=True) as fleet,
            LocalStack(parameters={"LogLevel": "ERROR", **sandbox_parameters(fleet)}) as stack,
        ):
            demo = Demo(stack, fleet)
            for number, (title, step) in enumerate(STEPS, start=1):
                heading(number, title)
                step(demo)
    except DemoFailure as failure:
        print(f"\nDEMO FAILED: {failure}", file=sys.stderr)
        return 1
    print("\nLocal stack and sandboxes stopped cleanly.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
