"""The QuickBooks query language and the reads built on it: query, entity by Id, attachments."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
import requests

from local.sandboxes.generator import Ledger, generate_ledger
from local.sandboxes.quickbooks import QuickBooksSandbox
from local.sandboxes.quickbooks.query import QueryError, matches, parse_query

CLIENT_ID = "query-app"

# ---- the parser ------------------------------------------------------------------------------


def test_a_full_query_parses_into_its_parts() -> None:
    # Given a query with every clause, keywords in mixed case and dotted fields
    text = (
        "Select * From Bill Where Balance > '0' and MetaData.LastUpdatedTime >= '2026-10-01T00:00:00-07:00' "
        "AND DocNumber IN ('A-1', 'B\\'2') orderby MetaData.LastUpdatedTime DESC, Id STARTPOSITION 11 MAXRESULTS 10"
    )

    # When it is parsed
    query = parse_query(text)

    # Then every part is understood
    assert query.entity == "Bill"
    assert not query.count_only
    assert [(c.path, c.operator, c.values) for c in query.conditions] == [
        (("Balance",), ">", ("0",)),
        (("MetaData", "LastUpdatedTime"), ">=", ("2026-10-01T00:00:00-07:00",)),
        (("DocNumber",), "IN", ("A-1", "B'2")),
    ]
    assert [(k.path, k.descending) for k in query.order_by] == [
        (("MetaData", "LastUpdatedTime"), True),
        (("Id",), False),
    ]
    assert (query.start_position, query.max_results) == (11, 10)


def test_count_query_and_default_page() -> None:
    query = parse_query("SELECT COUNT(*) FROM Vendor")
    assert query.count_only
    assert (query.start_position, query.max_results) == (1, 100)


def test_or_is_a_parser_error_at_its_column() -> None:
    # Given a query using OR, which QuickBooks does not support
    # When it is parsed, then Intuit's QueryParserError (4000) names the token and the column
    with pytest.raises(QueryError) as caught:
        parse_query("select * from Bill where Id = '1' or Id = '2'")
    assert caught.value.code == "4000"
    assert caught.value.message == "Error parsing query"
    assert caught.value.detail.startswith('QueryParserError: Encountered " <OR> "or "" at line 1, column 35.')


def test_maxresults_over_1000_is_rejected() -> None:
    with pytest.raises(QueryError) as caught:
        parse_query("select * from Bill maxresults 1001")
    assert (caught.value.code, caught.value.message) == ("4001", "Invalid query")
    assert "Max allowed value is 1000" in caught.value.detail
    assert parse_query("select * from Bill maxresults 1000").max_results == 1000


@pytest.mark.parametrize(
    "text",
    [
        "",
        "select Id from Bill",
        "select * from Bill where DocNumber = %abc",
        "select * from Bill where DocNumber = 'unterminated",
        "select * from Bill group by VendorRef",
        "select * from Bill where Balance != '0'",
    ],
)
def test_what_the_grammar_lacks_is_a_parser_error(text: str) -> None:
    with pytest.raises(QueryError) as caught:
        parse_query(text)
    assert caught.value.code == "4000"


def test_like_knows_only_the_percent_wildcard() -> None:
    entity = {"DisplayName": "Café Müller & Söhne GmbH"}
    assert matches(entity, parse_query("select * from Vendor where DisplayName like 'café%'").conditions[0])
    assert matches(entity, parse_query("select * from Vendor where DisplayName like '%söhne%'").conditions[0])
    assert not matches(entity, parse_query("select * from Vendor where DisplayName like 'Caf_ %'").conditions[0])


def test_conditions_compare_by_the_fields_own_type() -> None:
    # Given an attachable with a list of references, a decimal amount and an offset timestamp
    entity: dict[str, Any] = {
        "Balance": Decimal("100.50"),
        "MetaData": {"LastUpdatedTime": "2026-10-01T09:00:00-07:00"},
        "AttachableRef": [{"EntityRef": {"value": "42", "type": "Bill"}}],
        "VendorRef": {"value": "7", "name": "Acme"},
        "Active": True,
    }

    def where(condition: str) -> bool:
        return matches(entity, parse_query(f"select * from X where {condition}").conditions[0])

    # Then numbers compare as numbers, times as instants, references by value, lists by any item
    assert where("Balance > '99.9'") and not where("Balance > '100.5'")
    assert where("MetaData.LastUpdatedTime > '2026-10-01T15:59:59Z'")
    assert not where("MetaData.LastUpdatedTime > '2026-10-01T16:00:00Z'")
    assert where("AttachableRef.EntityRef.Type = 'Bill'") and where("AttachableRef.EntityRef.value = '42'")
    assert where("VendorRef = '7'") and where("Active = true") and not where("Active = false")


# ---- queries over HTTP -----------------------------------------------------------------------


@dataclass
class Company:
    sandbox: QuickBooksSandbox
    realm_id: str
    ledger: Ledger
    headers: dict[str, str]

    def url(self, path: str) -> str:
        return f"{self.sandbox.base_url}/v3/company/{self.realm_id}/{path}"

    def query(self, text: str) -> requests.Response:
        return requests.get(self.url("query"), params={"query": text}, headers=self.headers, timeout=10)


@pytest.fixture
def company() -> Iterator[Company]:
    sandbox = QuickBooksSandbox(seed=5)
    sandbox.register_app(CLIENT_ID, "secret", ["http://127.0.0.1:9/cb"])
    ledger = generate_ledger(seed=5, bills=45, documents=6, as_of=sandbox.clock.now())
    realm_id = sandbox.add_tenant(ledger)
    token = sandbox.issue_tokens(CLIENT_ID, realm_id)["access_token"]
    with sandbox:
        yield Company(sandbox, realm_id, ledger, {"Authorization": f"Bearer {token}", "Accept": "application/json"})


def test_open_bills_page_through_startposition_and_maxresults(company: Company) -> None:
    # Given a company whose ledger has a known number of unpaid bills
    expected = len(company.ledger.unpaid_bills())

    # When the client counts them, then pages through 10 at a time
    count = company.query("select count(*) from Bill where Balance > '0'").json()["QueryResponse"]["totalCount"]
    seen: list[str] = []
    start = 1
    while True:
        page = company.query(f"select * from Bill where Balance > '0' startposition {start} maxresults 10").json()
        bills = page["QueryResponse"].get("Bill", [])
        if not bills:
            break
        assert page["QueryResponse"]["startPosition"] == start
        assert page["QueryResponse"]["maxResults"] == len(bills)
        seen += [bill["Id"] for bill in bills]
        start += 10

    # Then every open bill came exactly once, and the count agreed
    assert count == expected
    assert len(seen) == len(set(seen)) == expected


def test_maxresults_over_1000_is_a_400_fault(company: Company) -> None:
    response = company.query("select * from Bill maxresults 1001")
    assert response.status_code == 400
    fault = response.json()["Fault"]
    assert fault["type"] == "ValidationFault"
    assert fault["Error"][0]["code"] == "4001"


def test_a_query_with_nothing_found_has_an_empty_query_response(company: Company) -> None:
    body = company.query("select * from Bill where DocNumber = 'no-such-invoice'").json()
    assert body["QueryResponse"] == {}
    assert body["time"]


def test_unknown_property_is_a_query_validation_error(company: Company) -> None:
    response = company.query("select * from Bill where Status = 'Open'")
    assert response.status_code == 400
    assert response.json()["Fault"]["Error"][0]["Detail"] == "QueryValidationError: property 'Status' is not queryable"


def test_query_can_be_posted_as_text(company: Company) -> None:
    response = requests.post(
        company.url("query"),
        data="select count(*) from Vendor",
        headers={**company.headers, "Content-Type": "application/text"},
        timeout=10,
    )
    assert response.json()["QueryResponse"]["totalCount"] >= 1


def test_inactive_vendors_come_back_only_when_asked_for(company: Company) -> None:
    # Given a ledger with an inactive vendor
    inactive = [v for v in company.ledger.vendors if not v.active]
    assert inactive

    # When vendors are queried plainly, then with Active in (true, false)
    plain = company.query("select * from Vendor maxresults 1000").json()["QueryResponse"]["Vendor"]
    everyone = company.query("select * from Vendor where Active in (true, false) maxresults 1000").json()

    # Then QuickBooks' name-list rule holds: inactive ones only in the second answer
    assert all(vendor["Active"] for vendor in plain)
    assert len(everyone["QueryResponse"]["Vendor"]) == len(company.ledger.vendors)


def test_changed_since_query_on_last_updated_time(company: Company) -> None:
    # Given one bill changed just now
    bill = next(b for b in company.sandbox.bills(company.realm_id) if b["Balance"] > 0)
    since = (company.sandbox.clock.now() - timedelta(seconds=1)).isoformat()
    company.sandbox.change_bill_amount(company.realm_id, bill["Id"], bill["TotalAmt"] + Decimal("10.00"))

    # When bills updated since a moment ago are asked for
    body = company.query(f"select * from Bill where MetaData.LastUpdatedTime > '{since}'").json()

    # Then exactly that bill comes back, with its new total, balance and SyncToken
    (changed,) = body["QueryResponse"]["Bill"]
    assert changed["Id"] == bill["Id"]
    assert Decimal(str(changed["TotalAmt"])) == bill["TotalAmt"] + Decimal("10.00")
    assert changed["SyncToken"] == str(int(bill["SyncToken"]) + 1)


def test_ids_compare_as_numbers(company: Company) -> None:
    # Given bills whose Ids are two-digit numbers (so '30' < '9' as text)
    every_bill = company.sandbox.bills(company.realm_id)
    assert all(10 <= int(bill["Id"]) < 100 for bill in every_bill)

    # When bills with an Id above 9 are asked for, highest first
    found = company.query("select * from Bill where Id > '9' orderby Id desc maxresults 1000").json()
    ids = [int(bill["Id"]) for bill in found["QueryResponse"]["Bill"]]

    # Then the comparison is numeric: every bill comes back, in descending order
    assert ids == sorted((int(bill["Id"]) for bill in every_bill), reverse=True)


def test_order_by_descending(company: Company) -> None:
    bills = company.query("select * from Bill orderby TotalAmt desc maxresults 5").json()["QueryResponse"]["Bill"]
    totals = [Decimal(str(b["TotalAmt"])) for b in bills]
    assert totals == sorted(totals, reverse=True)


def test_read_by_id_and_a_deleted_bill_is_object_not_found(company: Company) -> None:
    # Given an open bill
    bill = next(b for b in company.sandbox.bills(company.realm_id) if b["Balance"] > 0)
    read = requests.get(company.url(f"bill/{bill['Id']}"), headers=company.headers, timeout=10)
    assert read.json()["Bill"]["Id"] == bill["Id"]

    # When it is deleted in QuickBooks
    company.sandbox.delete_bill(company.realm_id, bill["Id"])

    # Then reading it is 610 Object Not Found and queries no longer find it
    gone = requests.get(company.url(f"bill/{bill['Id']}"), headers=company.headers, timeout=10)
    assert gone.status_code == 400
    assert gone.json()["Fault"]["Error"][0]["code"] == "610"
    assert company.query(f"select * from Bill where Id = '{bill['Id']}'").json()["QueryResponse"] == {}


def test_voided_bill_has_no_status_only_zero_amounts_and_a_note(company: Company) -> None:
    bill = next(b for b in company.sandbox.bills(company.realm_id) if b["Balance"] > 0)
    company.sandbox.void_bill(company.realm_id, bill["Id"])
    voided = requests.get(company.url(f"bill/{bill['Id']}"), headers=company.headers, timeout=10).json()["Bill"]
    assert "Status" not in voided
    assert (voided["Balance"], voided["TotalAmt"], voided["PrivateNote"]) == (0, 0, "Voided")
    assert all(line["Amount"] == 0 for line in voided["Line"])


# ---- attachments -----------------------------------------------------------------------------


def test_a_bills_attachment_downloads_through_a_temporary_link(company: Company) -> None:
    # Given an open bill with a document in the ledger
    record = next(b for b in company.ledger.bills if b.attachment is not None and b.state in ("open", "part_paid"))
    attachment = record.attachment
    assert attachment is not None
    bill_id = company.sandbox.entity_id(company.realm_id, record.key)

    # When the client lists the bill's attachables and asks for a download link
    found = company.query(
        "select * from Attachable where AttachableRef.EntityRef.Type = 'Bill' "
        f"and AttachableRef.EntityRef.value = '{bill_id}'"
    ).json()["QueryResponse"]["Attachable"]
    (attachable,) = found
    link = requests.get(company.url(f"download/{attachable['Id']}"), headers=company.headers, timeout=10)

    # Then the link is plain text and serves the very bytes, and so does TempDownloadUri
    assert link.headers["Content-Type"].startswith("text/plain")
    assert (attachable["FileName"], attachable["Size"]) == (attachment.file_name, len(attachment.content))
    downloaded = requests.get(link.text, timeout=10)
    assert downloaded.content == attachment.content
    assert downloaded.headers["Content-Type"] == attachment.mime_type
    assert requests.get(attachable["TempDownloadUri"], timeout=10).content == attachment.content


def test_download_link_expires_after_fifteen_minutes(company: Company) -> None:
    attachable = company.sandbox.attachables(company.realm_id)[0]
    link = requests.get(company.url(f"download/{attachable['Id']}"), headers=company.headers, timeout=10).text
    company.sandbox.clock.advance(15 * 60)
    expired = requests.get(link, timeout=10)
    assert expired.status_code == 403
    assert "AccessDenied" in expired.text
