"""What the three connectors share: where they point, how `api()` is built, and handing write-back and
reversal to their payments module. Everything that differs by provider stays in its folder (connector.py:
OAuth, organisations, reads; payments.py: payments and fees posted, found and undone)."""

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Protocol

from payedge_connect.models import Provider
from payedge_connect.providers.base import FeeToPost, PaymentToPost, Posted, SkippedRecord
from payedge_connect.providers.budget import CallerBudget
from payedge_connect.providers.http import CallCounter, ProviderApi


class PaymentsModule(Protocol):
    """A provider's payments.py: the write-back and reversal half of `AccountingConnector`, as module
    functions of the same names."""

    def post_payments(
        self, api: ProviderApi, payments: Sequence[PaymentToPost], idempotency_key: str, /
    ) -> list[Posted]: ...
    def find_payments(self, api: ProviderApi, payments: Sequence[PaymentToPost], /) -> dict[str, str]: ...
    def post_fees(self, api: ProviderApi, fees: Sequence[FeeToPost], idempotency_key: str, /) -> list[Posted]: ...
    def find_fees(self, api: ProviderApi, fees: Sequence[FeeToPost], /) -> dict[str, str]: ...
    def find_payment(self, api: ProviderApi, payment: PaymentToPost, /) -> str | None: ...
    def post_payment(self, api: ProviderApi, payment: PaymentToPost, /) -> str: ...
    def find_fee(self, api: ProviderApi, fee: FeeToPost, /) -> str | None: ...
    def post_fee(self, api: ProviderApi, fee: FeeToPost, /) -> str: ...
    def reverse_payment(self, api: ProviderApi, provider_payment_id: str, /) -> None: ...
    def payment_reversed(self, api: ProviderApi, provider_payment_id: str, /) -> bool: ...
    def reverse_fee(self, api: ProviderApi, provider_fee_id: str, /) -> None: ...
    def fee_reversed(self, api: ProviderApi, provider_fee_id: str, /) -> bool: ...


def split_skipped[T](results: Iterable[T | SkippedRecord]) -> tuple[list[T], list[SkippedRecord]]:
    """Records read, and apart those that could not be (each with a reason a user can act on), in order."""
    read: list[T] = []
    skipped: list[SkippedRecord] = []
    for result in results:
        if isinstance(result, SkippedRecord):
            skipped.append(result)
        else:
            read.append(result)
    return read, skipped


class Connector:
    """The common part of a connector. A subclass names its API root and organisation headers
    (`organisation_endpoint`) and its payments module (`payments`)."""

    provider: Provider
    payments: PaymentsModule

    def __init__(self, *, base_url: str | None = None) -> None:
        # None: the real service; else the sandbox every endpoint is rebased onto.
        self._base_url = base_url

    def organisation_endpoint(self, tenant_id: str) -> tuple[str, Mapping[str, str]]:
        """The API root of one organisation and the headers that name it on every call."""
        raise NotImplementedError

    def api(
        self,
        tenant_id: str,
        *,
        access_token: Callable[[], str],
        refresh_access_token: Callable[[], str] | None = None,
        calls: CallCounter | None = None,
        budget: CallerBudget | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> ProviderApi:
        base_url, headers = self.organisation_endpoint(tenant_id)
        return ProviderApi(
            base_url,
            provider=self.provider,
            access_token=access_token,
            refresh_access_token=refresh_access_token,
            headers=headers,
            calls=calls,
            budget=budget,
            sleep=sleep,
        )

    # ------------------------------------------------------------------------------------ write-back

    def post_payments(self, api: ProviderApi, batch: Sequence[PaymentToPost], idempotency_key: str) -> list[Posted]:
        return self.payments.post_payments(api, batch, idempotency_key)

    def find_payments(self, api: ProviderApi, batch: Sequence[PaymentToPost]) -> dict[str, str]:
        return self.payments.find_payments(api, batch)

    def post_fees(self, api: ProviderApi, fees: Sequence[FeeToPost], idempotency_key: str) -> list[Posted]:
        return self.payments.post_fees(api, fees, idempotency_key)

    def find_fees(self, api: ProviderApi, fees: Sequence[FeeToPost]) -> dict[str, str]:
        return self.payments.find_fees(api, fees)

    def find_payment(self, api: ProviderApi, payment: PaymentToPost) -> str | None:
        return self.payments.find_payment(api, payment)

    def post_payment(self, api: ProviderApi, payment: PaymentToPost) -> str:
        return self.payments.post_payment(api, payment)

    def find_fee(self, api: ProviderApi, fee: FeeToPost) -> str | None:
        return self.payments.find_fee(api, fee)

    def post_fee(self, api: ProviderApi, fee: FeeToPost) -> str:
        return self.payments.post_fee(api, fee)

    # ------------------------------------------------------------------------------------ reversal

    def reverse_payment(self, api: ProviderApi, provider_payment_id: str) -> None:
        self.payments.reverse_payment(api, provider_payment_id)

    def payment_reversed(self, api: ProviderApi, provider_payment_id: str) -> bool:
        return self.payments.payment_reversed(api, provider_payment_id)

    def reverse_fee(self, api: ProviderApi, provider_fee_id: str) -> None:
        self.payments.reverse_fee(api, provider_fee_id)

    def fee_reversed(self, api: ProviderApi, provider_fee_id: str) -> bool:
        return self.payments.fee_reversed(api, provider_fee_id)
