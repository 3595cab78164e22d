"""The platform's PaymentCompleted event, and the outcome events we publish back to its bus.

PaymentCompleted (source `payedge.payments`, detail-type `PaymentCompleted`), detail:
  businessId, connectionId, paymentOrderNumber, billId, vendorName, currency, amount, remittanceNote,
  invoiceNumber, paymentStatus, paymentDate, feeAmount, fundingSource, exchangeRate
paymentStatus: completed or settled posts; pending or processing waits (waiting_for_settlement) for a
later PaymentCompleted of the same order saying settled; failed, cancelled or returned is never posted.

PaymentReversed (source `payedge.payments`, detail-type `PaymentReversed`), detail:
  businessId, connectionId, paymentOrderNumber, reason, reversalDate
Amounts are strings or numbers with at most two decimals; dates are ISO 8601.
"""

import json
from datetime import date, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Any

import boto3
from pydantic import Field, field_validator

from payedge_connect.errors import InvalidInputError
from payedge_connect.models import PAYMENT_STATUSES, CurrencyCode, Identifier, PaymentOrder, Record

if TYPE_CHECKING:
    from mypy_boto3_events import EventBridgeClient

PAYMENT_EVENT_SOURCE = "payedge.payments"
PAYMENT_COMPLETED = "PaymentCompleted"
PAYMENT_REVERSED = "PaymentReversed"
OUTCOME_SOURCE = "payedge.connect"
OUTCOME_DETAIL_TYPE = "PaymentWriteBackUpdated"

# Amounts: at most 12 digits before the point and 2 after (every provider's money fields hold that).
PositiveAmount = Annotated[Decimal, Field(gt=0, max_digits=14, decimal_places=2)]
# Home-currency units per unit of the payment's currency (providers/base.py): 6 places, as Xero keeps its
# CurrencyRate, and at most 12 digits in all.
ExchangeRate = Annotated[Decimal, Field(gt=0, max_digits=12, decimal_places=6)]


class PaymentDetails(Record):
    """What the platform tells us about a completed payment (the HTTP API takes the same body)."""

    # Unique per business (across its connections): one platform payment is written back once, to one book.
    payment_order_number: Identifier
    bill_id: Identifier
    vendor_name: str = Field(min_length=1, max_length=500)
    currency: CurrencyCode
    amount: PositiveAmount
    remittance_note: str | None = Field(default=None, max_length=4000)
    invoice_number: str | None = Field(default=None, max_length=255)
    # The platform's status of the payment (models.PAYMENT_STATUSES, any case): only a settled one posts.
    payment_status: str = Field(min_length=1, max_length=40)
    payment_date: date
    fee_amount: Annotated[Decimal, Field(ge=0, max_digits=14, decimal_places=2)] | None = None
    funding_source: str = Field(min_length=1, max_length=64)
    # Required when the payment's currency is not the organisation's home currency (checked before posting).
    exchange_rate: ExchangeRate | None = None

    @field_validator("payment_status")
    @classmethod
    def _known_status(cls, value: str) -> str:
        if value.lower() not in PAYMENT_STATUSES:
            raise ValueError(f"paymentStatus must be one of {', '.join(sorted(PAYMENT_STATUSES))}")
        return value


# The payment dates accepted: a completed payment is dated at most a year back (a late event, a correction)
# and at most a day ahead of UTC's today (the platform's day may already have begun in the business's zone).
PAYMENT_DATE_DAYS_BACK = 366
PAYMENT_DATE_DAYS_AHEAD = 1


def check_payment_date(payment_date: date, today: date) -> None:
    """Refuse a payment date outside the window, naming the field."""
    earliest = today - timedelta(days=PAYMENT_DATE_DAYS_BACK)
    latest = today + timedelta(days=PAYMENT_DATE_DAYS_AHEAD)
    if not earliest <= payment_date <= latest:
        raise InvalidInputError(
            f"paymentDate must be between {earliest.isoformat()} and {latest.isoformat()}", field="body.paymentDate"
        )


class PaymentCompleted(PaymentDetails):
    """The event's detail: the payment plus whose connection it belongs to."""

    business_id: str = Field(min_length=1, max_length=128)
    connection_id: Identifier


class ReversalDetails(Record):
    """Why and when the platform reversed a payment (an ACH return, a stopped cheque, a recalled wire,
    a payment the user cancelled); the HTTP API takes the same body."""

    reason: str = Field(min_length=1, max_length=500)
    reversal_date: date


class PaymentReversed(ReversalDetails):
    """The PaymentReversed event's detail: the reversal plus whose payment order it is."""

    business_id: str = Field(min_length=1, max_length=128)
    connection_id: Identifier
    payment_order_number: Identifier


def publish_outcome(bus_name: str, order: PaymentOrder, *, events: "EventBridgeClient | None" = None) -> None:
    """Tell the platform what became of a payment order (posted, rejected, needs attention, ...)."""
    client = events or boto3.client("events")
    detail = {
        "businessId": order.business_id,
        "connectionId": order.connection_id,
        "paymentOrderNumber": order.payment_order_number,
        "status": order.status.value,
        "reasonCode": order.reason_code,
        "reason": order.reason,
        "providerPaymentId": order.provider_payment_id,
        "providerFeeId": order.provider_fee_id,
    }
    client.put_events(
        Entries=[
            {
                "Source": OUTCOME_SOURCE,
                "DetailType": OUTCOME_DETAIL_TYPE,
                "Detail": json.dumps(detail),
                "EventBusName": bus_name,
            }
        ]
    )


def publish_rejected_event(
    bus_name: str, detail: Any, reason_code: str, reason: str, *, events: "EventBridgeClient | None" = None
) -> None:
    """Tell the platform a PaymentCompleted event was refused before any record could be made of it."""
    known = detail if isinstance(detail, dict) else {}
    client = events or boto3.client("events")
    client.put_events(
        Entries=[
            {
                "Source": OUTCOME_SOURCE,
                "DetailType": OUTCOME_DETAIL_TYPE,
                "Detail": json.dumps(
                    {
                        "businessId": known.get("businessId"),
                        "connectionId": known.get("connectionId"),
                        "paymentOrderNumber": known.get("paymentOrderNumber"),
                        "status": "rejected",
                        "reasonCode": reason_code,
                        "reason": reason,
                    }
                ),
                "EventBusName": bus_name,
            }
        ]
    )
