"""The account mapping: which bank account each funding source pays from, which account takes fees.

The proposal comes from the provider's live accounts (bank accounts matched by currency); the user's
acceptance is checked against the provider again (exists, active, right kind and currency) before
the connection becomes `connected`.
"""

from datetime import datetime
from typing import TYPE_CHECKING

from pydantic import Field

from payedge_connect.connections.access import owned_connection
from payedge_connect.errors import ConflictError, InvalidInputError
from payedge_connect.models import AccountMapping, Connection, ConnectionStatus, Record
from payedge_connect.services import Services
from payedge_connect.settings import FundingSource

if TYPE_CHECKING:
    from payedge_connect.providers.base import LedgerAccount

_MAPPABLE = (ConnectionStatus.MAPPING_REQUIRED, ConnectionStatus.CONNECTED)
# Words that name a fee account in English and French charts of accounts.
_FEE_WORDS = ("fee", "charge", "frais")


class AccountOption(Record):
    account_id: str
    name: str
    currency: str | None = None


class FundingSourceProposal(Record):
    funding_source: str
    name: str
    currency: str
    proposed_account_id: str | None
    candidates: list[AccountOption]


class FeeAccountProposal(Record):
    proposed_account_id: str | None
    candidates: list[AccountOption]


class MappingProposal(Record):
    connection_id: str
    funding_sources: list[FundingSourceProposal]
    fee_account: FeeAccountProposal
    accepted_at: datetime | None = None


class MappingAcceptance(Record):
    """PUT /connections/{id}/mapping: the user's accepted choices."""

    accepted: bool
    # funding source id -> provider bank account id
    funding_sources: dict[str, str] = Field(min_length=1)
    fee_account_id: str | None = None


def _option(account: "LedgerAccount") -> AccountOption:
    return AccountOption(account_id=account.account_id, name=account.name, currency=account.currency)


def _mappable(services: Services, business_id: str, connection_id: str) -> Connection:
    connection = owned_connection(services.store, business_id, connection_id)
    if connection.status not in _MAPPABLE:
        raise ConflictError(f"connection is {connection.status.value}; the mapping comes after authorisation")
    return connection


def propose_mapping(
    services: Services, *, business_id: str, connection_id: str, funding_sources: list[FundingSource]
) -> MappingProposal:
    from payedge_connect.providers.base import AccountKind  # noqa: PLC0415 - the provider side, on first use

    connection = _mappable(services, business_id, connection_id)
    accounts = [a for a in services.connector(connection.provider).accounts(services.api(connection)) if a.active]
    current = connection.mapping
    proposals = []
    for source in funding_sources:
        candidates = sorted(
            (a for a in accounts if a.kind is AccountKind.BANK and a.currency == source.currency),
            key=lambda account: account.name.casefold(),
        )
        ids = [a.account_id for a in candidates]
        chosen = current.funding_sources.get(source.id) if current else None
        proposals.append(
            FundingSourceProposal(
                funding_source=source.id,
                name=source.name,
                currency=source.currency,
                proposed_account_id=chosen if chosen in ids else (ids[0] if ids else None),
                candidates=[_option(a) for a in candidates],
            )
        )
    expenses = sorted((a for a in accounts if a.kind is AccountKind.EXPENSE), key=lambda a: a.name.casefold())
    expense_ids = [a.account_id for a in expenses]
    fee_named = [a.account_id for a in expenses if any(word in a.name.casefold() for word in _FEE_WORDS)]
    current_fee = current.fee_account_id if current else None
    return MappingProposal(
        connection_id=connection.connection_id,
        funding_sources=proposals,
        fee_account=FeeAccountProposal(
            proposed_account_id=current_fee if current_fee in expense_ids else (fee_named[0] if fee_named else None),
            candidates=[_option(a) for a in expenses],
        ),
        accepted_at=current.accepted_at if current else None,
    )


def accept_mapping(
    services: Services,
    *,
    business_id: str,
    connection_id: str,
    acceptance: MappingAcceptance,
    funding_sources: list[FundingSource],
) -> Connection:
    from payedge_connect.providers.base import AccountKind  # noqa: PLC0415 - the provider side, on first use

    if not acceptance.accepted:
        raise InvalidInputError("the mapping must be accepted (accepted: true)", field="body.accepted")
    known = {source.id: source for source in funding_sources}
    for source_id in acceptance.funding_sources:
        if source_id not in known:
            raise InvalidInputError(f"unknown funding source {source_id!r}", field=f"body.fundingSources.{source_id}")
    connection = _mappable(services, business_id, connection_id)
    connector, api = services.connector(connection.provider), services.api(connection)
    accounts = {a.account_id: a for a in connector.accounts(api)}

    for source_id, account_id in acceptance.funding_sources.items():
        field = f"body.fundingSources.{source_id}"
        account = accounts.get(account_id)
        if account is None:
            raise InvalidInputError(f"account {account_id} does not exist at the provider", field=field)
        if not account.active:
            raise InvalidInputError(f"account {account.name} is inactive", field=field)
        if account.kind is not AccountKind.BANK:
            raise InvalidInputError(f"account {account.name} is not a bank account", field=field)
        if account.currency != known[source_id].currency:
            raise InvalidInputError(
                f"account {account.name} is in {account.currency}, the funding source in {known[source_id].currency}",
                field=field,
            )
    if acceptance.fee_account_id is not None:
        fee = accounts.get(acceptance.fee_account_id)
        field = "body.feeAccountId"
        if fee is None:
            raise InvalidInputError(f"account {acceptance.fee_account_id} does not exist at the provider", field=field)
        if not fee.active or fee.kind is not AccountKind.EXPENSE:
            raise InvalidInputError(f"account {fee.name} is not an active expense account", field=field)

    now = services.clock()
    return services.store.connections.save_connection(
        connection.model_copy(
            update={
                "mapping": AccountMapping(
                    funding_sources=dict(acceptance.funding_sources),
                    fee_account_id=acceptance.fee_account_id,
                    accepted_at=now,
                ),
                # Read with the mapping: the write-back's foreign-currency check needs it before posting.
                "home_currency": connector.home_currency(api),
                "status": ConnectionStatus.CONNECTED,
                "updated_at": now,
            }
        )
    )
