"""Connecting each accounting package end to end: the web app's calls through the local gateway with a
JWT, the provider's consent page, the callback without a JWT, the organisation choice and the mapping."""

import pytest

from local.sandboxes.fleet import PROVIDERS, ProviderName

from .world import BUSINESS_A, ConnectWorld

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")

SOFTWARE = {"quickbooks": "QuickBooks Online", "xero": "Xero", "sage": "Sage Accounting"}
WEB_APP = "http://web-app.payedge.localhost/settings/integrations"


def bank_accounts_by_currency(world: ConnectWorld, provider: ProviderName, tenant_id: str) -> dict[str, set[str]]:
    """The organisation's active bank accounts per currency, read from the sandbox itself."""
    by_currency: dict[str, set[str]] = {}
    if provider == "quickbooks":
        for account in world.fleet.quickbooks.accounts(tenant_id):
            if account["AccountType"] == "Bank" and account.get("Active", True):
                by_currency.setdefault(account["CurrencyRef"]["value"], set()).add(account["Id"])
    elif provider == "xero":
        for xero_account in world.fleet.xero.organisation(tenant_id).accounts.values():
            if xero_account.type == "BANK" and xero_account.status == "ACTIVE":
                by_currency.setdefault(xero_account.currency, set()).add(xero_account.account_id)
    else:
        for bank in world.fleet.sage.bank_accounts(tenant_id):
            if bank["is_active"]:
                by_currency.setdefault(bank["currency"]["id"], set()).add(bank["id"])
    return by_currency


@pytest.mark.parametrize("provider", ["quickbooks", "sage"])
def test_a_single_organisation_provider_connects_through_consent_callback_and_mapping(
    world: ConnectWorld, provider: ProviderName
) -> None:
    tenant_id = world.fleet.tenant_ids[provider][0]

    # Given a business adding a connection from the integrations page
    started = world.start(provider)
    assert started.authorization_url.startswith(world.fleet.base_urls[provider])

    # When the user approves on the provider's consent page and the browser comes back to the callback
    result = world.authorize(started)

    # Then the browser lands on the web app with the outcome and the connection, which waits for a mapping
    assert result.status == 302
    assert result.location.startswith(f"{WEB_APP}?")
    assert (result.outcome, result.connection_id) == ("mapping_required", started.connection_id)
    shown = world.call("GET", f"/connections/{started.connection_id}").json()
    assert shown["status"] == "mapping_required"
    assert shown["attention"] == ["Accept the account mapping to start syncing."]
    assert shown["mapping"] is None

    # When the web app asks for the proposed mapping
    proposal = world.call("GET", f"/connections/{started.connection_id}/mapping")

    # Then each funding source is offered the bank accounts of its currency, and a fee account is proposed
    assert proposal.status_code == 200, proposal.text
    body = proposal.json()
    banks = bank_accounts_by_currency(world, provider, tenant_id)
    assert [(source["fundingSource"], source["currency"]) for source in body["fundingSources"]] == [
        ("cad-operating", "CAD"),
        ("usd-operating", "USD"),
    ]
    for source in body["fundingSources"]:
        candidates = {candidate["accountId"] for candidate in source["candidates"]}
        assert candidates == banks[source["currency"]]
        assert source["proposedAccountId"] in candidates
        assert {candidate["currency"] for candidate in source["candidates"]} == {source["currency"]}
    fee = body["feeAccount"]
    fee_names = {candidate["accountId"]: candidate["name"] for candidate in fee["candidates"]}
    assert fee_names[fee["proposedAccountId"]] == "Bank fees"
    assert not {candidate["accountId"] for candidate in fee["candidates"]} & set().union(*banks.values())

    # When the user accepts it
    acceptance = {
        "accepted": True,
        "fundingSources": {source["fundingSource"]: source["proposedAccountId"] for source in body["fundingSources"]},
        "feeAccountId": fee["proposedAccountId"],
    }
    accepted = world.call("PUT", f"/connections/{started.connection_id}/mapping", json=acceptance)

    # Then the connection is connected, and the integrations page shows it with the organisation and mapping
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["status"] == "connected"
    shown = world.call("GET", f"/connections/{started.connection_id}").json()
    assert shown["provider"] == provider
    assert shown["accountingSoftware"] == SOFTWARE[provider]
    assert shown["organisationName"] == expected_organisation_name(world, provider, tenant_id)
    assert shown["status"] == "connected"
    assert shown["attention"] == []
    assert shown["mapping"]["fundingSources"] == acceptance["fundingSources"]
    assert shown["mapping"]["feeAccountId"] == acceptance["feeAccountId"]
    assert shown["mapping"]["acceptedAt"] is not None
    listed = {item["connectionId"]: item for item in world.call("GET", "/connections").json()["connections"]}
    assert listed[started.connection_id] == shown
    # And the tokens are in the connection's secret, never in the record
    assert world.stored_tokens(started.connection_id) is not None
    assert world.connection(started.connection_id).tenant_id == tenant_id


def expected_organisation_name(world: ConnectWorld, provider: ProviderName, tenant_id: str) -> str:
    if provider == "quickbooks":
        return world.fleet.quickbooks._realm(tenant_id).company_name
    if provider == "xero":
        return world.fleet.xero.organisation(tenant_id).name
    return world.fleet.sage.business(tenant_id).name


def test_xero_with_two_organisations_makes_the_user_choose_and_never_picks_the_first(world: ConnectWorld) -> None:
    first, second = world.fleet.tenant_ids["xero"]

    # Given a Xero user who ticks both organisations on the consent page
    started = world.start("xero")
    result = world.authorize(started)

    # Then the connection waits for the user's choice instead of taking the first organisation
    assert (result.outcome, result.connection_id) == ("choosing_tenant", started.connection_id)
    shown = world.call("GET", f"/connections/{started.connection_id}").json()
    assert shown["status"] == "choosing_tenant"
    assert shown["organisationName"] is None
    assert world.connection(started.connection_id).tenant_id is None
    assert world.call("GET", f"/connections/{started.connection_id}/mapping").status_code == 409

    # When the web app lists the organisations and the user picks the second one
    tenants = world.call("GET", f"/connections/{started.connection_id}/tenants").json()["tenants"]
    assert [tenant["tenantId"] for tenant in tenants] == [first, second]
    assert [tenant["name"] for tenant in tenants] == [world.fleet.xero.organisation(t).name for t in (first, second)]
    chosen = world.call("PUT", f"/connections/{started.connection_id}/tenant", json={"tenantId": second})

    # Then the connection is bound to that organisation and the mapping proposes its bank accounts
    assert chosen.status_code == 200, chosen.text
    assert chosen.json()["status"] == "mapping_required"
    assert world.connection(started.connection_id).tenant_id == second
    proposal = world.call("GET", f"/connections/{started.connection_id}/mapping").json()
    second_banks = bank_accounts_by_currency(world, "xero", second)
    for source in proposal["fundingSources"]:
        assert {candidate["accountId"] for candidate in source["candidates"]} == second_banks[source["currency"]]

    # And once accepted, the connection shows the chosen organisation; choosing again is refused
    world.accept_proposed_mapping(started.connection_id)
    shown = world.call("GET", f"/connections/{started.connection_id}").json()
    assert (shown["status"], shown["organisationName"]) == ("connected", world.fleet.xero.organisation(second).name)
    again = world.call("PUT", f"/connections/{started.connection_id}/tenant", json={"tenantId": first})
    assert again.status_code == 409
    assert world.connection(started.connection_id).tenant_id == second


def test_every_provider_is_listed_with_its_connection_after_connecting_all_three(world: ConnectWorld) -> None:
    # Given a business that connects QuickBooks, Xero and Sage
    business = "biz-all-three"
    ids = {provider: world.connect(provider, business) for provider in PROVIDERS}

    # When the web app lists the business's connections
    listed = world.call("GET", "/connections", business).json()["connections"]

    # Then each appears once, connected, with its organisation and accepted mapping
    assert {item["connectionId"]: item["provider"] for item in listed} == {ids[p]: p for p in PROVIDERS}
    for item in listed:
        assert item["status"] == "connected"
        assert item["organisationName"]
        assert set(item["mapping"]["fundingSources"]) == {"cad-operating", "usd-operating"}
        assert item["mapping"]["feeAccountId"]


def test_remapping_a_connected_connection_keeps_it_connected_with_the_new_choice(world: ConnectWorld) -> None:
    # Given a connected QuickBooks company
    connection_id = world.connect("quickbooks")
    before = world.call("GET", f"/connections/{connection_id}/mapping").json()

    # When the user accepts the mapping again without a fee account
    acceptance = {
        "accepted": True,
        "fundingSources": {"cad-operating": before["fundingSources"][0]["proposedAccountId"]},
    }
    response = world.call("PUT", f"/connections/{connection_id}/mapping", json=acceptance)

    # Then the new mapping is the one shown, and the proposal starts from it
    assert response.status_code == 200, response.text
    shown = world.call("GET", f"/connections/{connection_id}").json()
    assert shown["status"] == "connected"
    assert shown["mapping"]["fundingSources"] == acceptance["fundingSources"]
    assert shown["mapping"]["feeAccountId"] is None


# ------------------------------------------------------------------------------------- bad requests


def problem_fields(response_json: dict[str, object]) -> list[object]:
    errors = response_json.get("errors") or []
    assert isinstance(errors, list)
    return [error["field"] for error in errors]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"provider": "freshbooks"}, "body.provider"),
        ({}, "body.provider"),
        ({"provider": "xero", "businessId": BUSINESS_A}, "body.businessId"),
    ],
)
def test_adding_a_connection_with_a_bad_body_names_the_field(
    world: ConnectWorld, body: dict[str, str], field: str
) -> None:
    before = len(world.call("GET", "/connections", "biz-bad-bodies").json()["connections"])
    response = world.call("POST", "/connections", "biz-bad-bodies", json=body)
    assert response.status_code == 422
    assert response.headers["Content-Type"] == "application/problem+json"
    assert problem_fields(response.json()) == [field]
    assert len(world.call("GET", "/connections", "biz-bad-bodies").json()["connections"]) == before


def test_a_body_that_is_not_json_is_refused_with_a_problem_document(world: ConnectWorld) -> None:
    # A body that cannot be parsed is a malformed request (400); one that parses but is wrong is 422.
    response = world.call("POST", "/connections", data="provider=xero")
    assert response.status_code == 400
    assert response.json()["status"] == 400
    assert problem_fields(response.json()) == ["body"]


def mapping_of(world: ConnectWorld, connection_id: str) -> dict[str, object]:
    return world.call("GET", f"/connections/{connection_id}").json()


@pytest.fixture(scope="module")
def waiting_for_mapping(world: ConnectWorld) -> dict[str, str]:
    """A QuickBooks connection waiting for its mapping, and the company's account ids by role."""
    started = world.start("quickbooks", "biz-mapping-errors")
    assert world.authorize(started).outcome == "mapping_required"
    realm = world.fleet.tenant_ids["quickbooks"][0]
    accounts = {
        (account["AccountType"], (account.get("CurrencyRef") or {}).get("value")): account["Id"]
        for account in world.fleet.quickbooks.accounts(realm)
        if account.get("Active", True)
    }
    closed = next(a["Id"] for a in world.fleet.quickbooks.accounts(realm) if not a.get("Active", True))
    return {
        "connection_id": started.connection_id,
        "cad_bank": accounts[("Bank", "CAD")],
        "usd_bank": accounts[("Bank", "USD")],
        "expense": next(value for (kind, _), value in accounts.items() if kind == "Expense"),
        "closed_bank": closed,
    }


@pytest.mark.parametrize(
    ("acceptance", "status", "field"),
    [
        ({"fundingSources": {"cad-operating": "cad_bank"}}, 422, "body.accepted"),
        ({"accepted": False, "fundingSources": {"cad-operating": "cad_bank"}}, 400, "body.accepted"),
        ({"accepted": True, "fundingSources": {}}, 422, "body.fundingSources"),
        ({"accepted": True}, 422, "body.fundingSources"),
        ({"accepted": True, "fundingSources": {"cad-operating": "usd_bank"}}, 400, "body.fundingSources.cad-operating"),
        ({"accepted": True, "fundingSources": {"cad-operating": "expense"}}, 400, "body.fundingSources.cad-operating"),
        ({"accepted": True, "fundingSources": {"cad-operating": "9999"}}, 400, "body.fundingSources.cad-operating"),
        (
            {"accepted": True, "fundingSources": {"cad-operating": "closed_bank"}},
            400,
            "body.fundingSources.cad-operating",
        ),
        ({"accepted": True, "fundingSources": {"eur-savings": "cad_bank"}}, 400, "body.fundingSources.eur-savings"),
        (
            {"accepted": True, "fundingSources": {"cad-operating": "cad_bank"}, "feeAccountId": "usd_bank"},
            400,
            "body.feeAccountId",
        ),
        (
            {"accepted": True, "fundingSources": {"cad-operating": "cad_bank"}, "feeAccountId": "9999"},
            400,
            "body.feeAccountId",
        ),
    ],
    ids=[
        "accepted missing",
        "accepted false",
        "no funding source",
        "funding sources missing",
        "wrong currency",
        "not a bank account",
        "unknown account",
        "closed bank account",
        "unknown funding source",
        "fee account is a bank account",
        "unknown fee account",
    ],
)
def test_a_mapping_the_provider_cannot_take_is_refused_naming_the_field_and_nothing_is_saved(
    world: ConnectWorld, waiting_for_mapping: dict[str, str], acceptance: dict[str, object], status: int, field: str
) -> None:
    connection_id = waiting_for_mapping["connection_id"]
    sources = acceptance.get("fundingSources")
    if isinstance(sources, dict):
        acceptance = {
            **acceptance,
            "fundingSources": {source: waiting_for_mapping.get(role, role) for source, role in sources.items()},
        }
    if "feeAccountId" in acceptance:
        fee = str(acceptance["feeAccountId"])
        acceptance["feeAccountId"] = waiting_for_mapping.get(fee, fee)
    before = world.connection(connection_id)

    response = world.call("PUT", f"/connections/{connection_id}/mapping", "biz-mapping-errors", json=acceptance)

    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == "application/problem+json"
    assert problem_fields(response.json()) == [field], response.text
    after = world.connection(connection_id)
    assert (after.status.value, after.mapping, after.version) == ("mapping_required", None, before.version)


def test_an_organisation_that_is_not_on_offer_cannot_be_chosen(world: ConnectWorld) -> None:
    started = world.start("xero", "biz-choice-errors")
    assert world.authorize(started).outcome == "choosing_tenant"

    unknown = world.call(
        "PUT", f"/connections/{started.connection_id}/tenant", "biz-choice-errors", json={"tenantId": "not-offered"}
    )
    missing = world.call("PUT", f"/connections/{started.connection_id}/tenant", "biz-choice-errors", json={})

    assert unknown.status_code == 400
    assert problem_fields(unknown.json()) == ["body.tenantId"]
    assert missing.status_code == 422
    assert problem_fields(missing.json()) == ["body.tenantId"]
    assert world.connection(started.connection_id).status.value == "choosing_tenant"


def test_bank_accounts_of_another_currency_are_never_proposed(world: ConnectWorld) -> None:
    # Given a Sage business (bank accounts in CAD and USD)
    connection_id = world.connect("sage", "biz-currencies")
    # When the mapping is proposed again
    proposal = world.call("GET", f"/connections/{connection_id}/mapping", "biz-currencies").json()
    # Then no candidate has a currency other than its funding source's
    for source in proposal["fundingSources"]:
        assert all(candidate["currency"] == source["currency"] for candidate in source["candidates"])
