"""A user's whole path through the reference web app, in headless Chromium: sign in, Add connection,
Xero's consent page, the organisation choice, the mapping, Sync, Unpaid payables with the invoice document,
Pay and its write-back outcome, a problem document, Vendors' Attention required tab, and then a revoked
grant, Reconnect and Disconnect. Every call goes from the web app's origin to the gateway (CORS). A
screenshot of each page is saved (tests/webapp/conftest.py: SCREENSHOTS; `make screenshots` writes docs/).
"""

import re
from decimal import Decimal
from pathlib import Path

import pytest
import requests
from playwright.sync_api import Page, expect

from tests.webapp.conftest import Running

pytestmark = pytest.mark.integration

PROVIDER = "xero"


def _shot(page: Page, folder: Path, name: str) -> None:
    page.screenshot(path=folder / f"{name}.png", full_page=True)


def _ready(page: Page, name: str) -> None:
    """Wait until the web app has rendered page `name` (its function name) with its data."""
    page.wait_for_selector(f'body[data-ready="{name}"]')


def _sign_in(page: Page, running: Running, screenshots: Path) -> None:
    page.goto(running.web_app.url)
    _ready(page, "signInPage")
    _shot(page, screenshots, "01-sign-in")
    page.click("[data-action=dev-login]")
    _ready(page, "integrationsPage")


def _approve_on_xero(page: Page, running: Running, organisations: list[str], screenshots: Path, name: str) -> None:
    """The sandbox's consent page (Xero's own page in production): tick the organisations, allow access."""
    page.wait_for_url(re.compile(re.escape(running.fleet.base_urls[PROVIDER]) + ".*"))
    expect(page.locator("h1")).to_contain_text("wants to access your Xero data")
    for organisation in organisations:
        page.get_by_label(organisation).check()
    _shot(page, screenshots, name)
    page.get_by_role("button", name="Allow access").click()


def _connect_xero(page: Page, running: Running, screenshots: Path) -> tuple[str, str]:
    """From the gear menu to a connected Xero organisation; returns the organisation's tenant id and name."""
    xero = running.fleet.xero
    tenants = {xero.organisation(tenant).name: tenant for tenant in running.fleet.tenant_ids[PROVIDER]}
    # The organisation with an open (nothing paid yet) bill carrying an invoice document (a Xero attachment)
    chosen = next(
        name
        for name, tenant in sorted(tenants.items())
        if any(i["HasAttachments"] and Decimal(str(i["AmountPaid"])) == 0 for i in xero.invoices(tenant))
    )

    # Gear → Manage profile → Third-party integrations → Add connection: the supported software
    page.click("#gear")
    page.get_by_role("link", name="Third-party integrations").click()
    _ready(page, "integrationsPage")
    page.click("[data-action=add-connection]")
    _ready(page, "addConnectionPage")
    expect(page.locator("label.choice")).to_have_count(3)
    for software in ("QuickBooks Online", "Xero", "Sage Accounting"):
        expect(page.locator("label.choice", has_text=software)).to_be_visible()
    page.locator("label.choice[data-provider=xero] input").check()
    _shot(page, screenshots, "02-add-connection")

    # Continue → Xero's secure page: the user grants both organisations
    page.click("[data-action=continue]")
    _approve_on_xero(page, running, sorted(tenants), screenshots, "03-consent-page")

    # The callback brings the browser back to the web app, which asks which organisation
    _ready(page, "organisationPage")
    assert page.url.startswith(running.web_app.origin)
    expect(page.locator("[data-tenant]")).to_have_count(2)
    page.locator(f'[data-tenant="{chosen}"] input').check()
    _shot(page, screenshots, "04-choose-organisation")
    page.click("[data-action=choose-organisation]")

    # The proposed mapping: a bank account per funding source and a fee account; Accept
    _ready(page, "mappingPage")
    expect(page.locator("h1")).to_contain_text(chosen)
    expect(page.locator("#fs-cad-operating option:checked")).to_have_text(re.compile("CAD"))
    _shot(page, screenshots, "05-account-mapping")
    page.click("[data-action=accept-mapping]")

    # The confirmed connection on the integrations page
    _ready(page, "integrationsPage")
    card = page.locator("[data-connection][data-provider=xero]")
    expect(card.locator("[data-field=organisation]")).to_have_text(chosen)
    expect(card.locator("[data-field=status]")).to_have_text("Connected")
    expect(page.locator("#flash")).to_contain_text("Xero is connected")
    return tenants[chosen], chosen


def _sync_from_the_dashboard(page: Page, screenshots: Path) -> None:
    page.click("nav [data-nav=dashboard]")
    _ready(page, "dashboardPage")
    card = page.locator("[data-dashboard-card]")
    expect(card).to_have_count(1)
    # The run's progress shows only while it runs: note every time it appears
    page.evaluate("""() => {
        window.syncProgressSeen = [];
        new MutationObserver(() => {
            const shown = document.querySelector("[data-sync-progress]");
            if (shown) window.syncProgressSeen.push(shown.textContent);
        }).observe(document.body, {subtree: true, childList: true});
    }""")
    card.locator("[data-action=sync]").click()
    outcome = card.locator("[data-sync-outcome]")
    expect(outcome).to_be_visible(timeout=60_000)
    expect(outcome).to_have_attribute("data-sync-outcome", "succeeded")
    progress = page.evaluate("window.syncProgressSeen")
    assert progress and progress[0].startswith("Sync running"), progress
    expect(outcome).to_contain_text("calls to the accounting software")
    _shot(page, screenshots, "07-dashboard-sync")
    # The card's last sync, as the API now reports it
    page.reload()
    _ready(page, "dashboardPage")
    expect(card.locator("[data-field=last-sync]")).to_contain_text("succeeded")


def _unpaid_payables(page: Page, running: Running, screenshots: Path) -> None:
    page.click("nav [data-nav=payables]")
    _ready(page, "payablesPage")
    rows = page.locator("#payables tbody tr[data-bill]")
    assert rows.count() > 0
    first = rows.first
    for field in ("vendor", "invoice-number", "due-date", "amount-due", "remittance-note", "software"):
        expect(first.locator(f"[data-field={field}]")).not_to_be_empty()
    expect(first.locator("[data-field=software]")).to_have_text("Xero")
    # The invoice document: a short-lived link to the private bucket, opened in a new tab
    link = page.locator("[data-action=invoice-document]").first
    # (a PDF: Chromium downloads it from the new tab; the request it made is the link it followed)
    endpoint = running.stack.endpoint_url
    with page.context.expect_event("request", predicate=lambda request: request.url.startswith(endpoint)) as sent:
        link.click()
    document_url = sent.value.url
    fetched = requests.get(document_url, timeout=10)
    assert fetched.status_code == 200 and fetched.content
    _shot(page, screenshots, "08-unpaid-payables")


def _pay_a_bill(page: Page, running: Running, tenant: str, screenshots: Path) -> None:
    row = page.locator("#payables tbody tr[data-bill][data-currency=CAD]").first
    bill_id = row.get_attribute("data-bill")
    row.locator("[data-action=pay]").click()
    form = page.locator(f'[data-pay-form="{bill_id}"]')
    expect(form.locator("select[name=fundingSource]")).to_have_value("cad-operating")
    form.locator("input[name=feeAmount]").fill("1.25")
    form.locator("input[name=remittanceNote]").fill("Paid through PayEdge")
    form.locator("[data-action=submit-payment]").click()
    outcome = page.locator("[data-payment-outcome]")
    expect(outcome).to_be_visible(timeout=60_000)
    expect(outcome).to_have_attribute("data-payment-outcome", "posted")
    expect(outcome).to_contain_text("recorded in Xero as payment")
    _shot(page, screenshots, "09-payment-posted")
    # And Xero's own ledger shows the bill paid
    invoice = next(item for item in running.fleet.xero.invoices(tenant) if item["InvoiceID"] == bill_id)
    assert Decimal(str(invoice["AmountDue"])) == 0


def _a_problem_document_is_shown(page: Page, screenshots: Path) -> None:
    row = page.locator("#payables tbody tr[data-bill]").nth(1)
    bill_id = row.get_attribute("data-bill")
    row.locator("[data-action=pay]").click()
    form = page.locator(f'[data-pay-form="{bill_id}"]')
    form.locator("input[name=amount]").fill("0")
    form.locator("[data-action=submit-payment]").click()
    shown = page.locator(".problem").last
    expect(shown).to_contain_text("Invalid request")
    expect(shown).to_have_attribute("data-problem-status", "422")
    expect(shown.locator('[data-field="body.amount"]')).to_be_visible()
    shown.scroll_into_view_if_needed()
    _shot(page, screenshots, "10-problem-document")


def _vendors_needing_attention(page: Page, running: Running, screenshots: Path) -> None:
    page.click("nav [data-nav=vendors]")
    _ready(page, "vendorsPage")
    page.click("[data-tab=attention]")
    _ready(page, "vendorsPage")
    count = page.locator("[data-attention-count]")
    before = int(count.inner_text())
    rows = page.locator("#vendors tbody tr[data-vendor]")
    expect(rows).to_have_count(before)
    assert before > 0
    vendor_id = rows.first.get_attribute("data-vendor")
    rows.first.locator("[data-action=acknowledge]").click()
    expect(page.locator("#flash")).to_contain_text("acknowledged")
    expect(count).to_have_text(str(before - 1))
    expect(page.locator(f'[data-vendor="{vendor_id}"]')).to_have_count(0)
    _shot(page, screenshots, "11-vendors-attention-required")
    # Reloaded from the API, the vendor is no longer in the tab
    page.reload()
    _ready(page, "vendorsPage")
    expect(page.locator(f'[data-vendor="{vendor_id}"]')).to_have_count(0)


def _reconnect_and_disconnect(page: Page, running: Running, tenant: str, name: str, screenshots: Path) -> None:
    # The user revokes PayEdge at Xero; the next sync finds out
    running.fleet.xero.revoke_grant(tenant)
    page.click("#gear")
    page.get_by_role("link", name="Third-party integrations").click()
    _ready(page, "integrationsPage")
    card = page.locator("[data-provider=xero]")
    card.locator("[data-action=sync]").click()
    expect(card.locator("[data-sync-outcome]")).to_be_visible(timeout=60_000)
    page.reload()
    _ready(page, "integrationsPage")
    expect(card.locator("[data-field=status]")).to_have_text("Reauthorisation required")
    expect(card.locator(".attention")).to_contain_text("reconnect")
    _shot(page, screenshots, "12-reauthorization-required")

    # Reconnect → Xero's consent page for the same organisation → connected again
    card.locator("[data-action=reconnect]").click()
    _approve_on_xero(page, running, [name], screenshots, "13-consent-page-reconnect")
    _ready(page, "integrationsPage")
    expect(page.locator("#flash")).to_contain_text("Reconnected")
    expect(card.locator("[data-field=status]")).to_have_text("Connected")
    expect(card.locator("[data-field=organisation]")).to_have_text(name)
    _shot(page, screenshots, "14-reconnected")

    # Disconnect (asked twice)
    card.locator("[data-action=disconnect]").click()
    card.locator("[data-action=confirm-disconnect]").click()
    expect(page.locator("#flash")).to_contain_text("disconnected")
    expect(card.locator("[data-field=status]")).to_have_text("Disconnected")
    _shot(page, screenshots, "15-disconnected")


def test_a_user_connects_xero_syncs_pays_and_reviews_vendors_in_the_browser(
    running: Running, page: Page, screenshots: Path
) -> None:
    _sign_in(page, running, screenshots)
    tenant, name = _connect_xero(page, running, screenshots)
    _shot(page, screenshots, "06-connected")
    _sync_from_the_dashboard(page, screenshots)
    _unpaid_payables(page, running, screenshots)
    _pay_a_bill(page, running, tenant, screenshots)
    _a_problem_document_is_shown(page, screenshots)
    _vendors_needing_attention(page, running, screenshots)
    _reconnect_and_disconnect(page, running, tenant, name, screenshots)


def test_a_page_on_another_origin_cannot_call_the_api_from_the_browser(running: Running, page: Page) -> None:
    # The same call the web app makes, from a page the sandbox serves (another origin, not in WebAppOrigins)
    token = running.web_app.issue_token()
    script = """async ([url, token]) => {
        try {
            const response = await fetch(url, {headers: {Authorization: `Bearer ${token}`}});
            return `answered ${response.status}`;
        } catch (error) {
            return `refused: ${error.message}`;
        }
    }"""
    page.goto(running.fleet.base_urls[PROVIDER] + "/")
    refused = page.evaluate(script, [f"{running.stack.api_url}/providers", token])
    assert refused == "refused: Failed to fetch"

    # And from the web app's origin the same call answers
    page.goto(running.web_app.url + "#/signin")
    assert page.evaluate(script, [f"{running.stack.api_url}/providers", token]) == "answered 200"


def test_a_consent_the_user_cancels_comes_back_as_the_callbacks_failure(
    running: Running, page: Page, screenshots: Path
) -> None:
    page.goto(running.web_app.url + "#/integrations/add")
    page.wait_for_selector("body[data-ready]:not([data-ready=''])")
    if page.locator("body[data-ready=signInPage]").count():
        page.click("[data-action=dev-login]")
    _ready(page, "addConnectionPage")
    page.locator("label.choice[data-provider=sage] input").check()
    page.click("[data-action=continue]")
    page.wait_for_url(re.compile(re.escape(running.fleet.base_urls["sage"]) + ".*"))
    page.get_by_role("button", name="Cancel").click()
    _ready(page, "integrationsPage")
    expect(page.locator("#flash [role=alert]")).to_contain_text("did not grant access")
    _shot(page, screenshots, "16-consent-cancelled")
