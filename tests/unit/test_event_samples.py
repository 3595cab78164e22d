"""The sample events under events/ are ones the functions accept."""

import json
from pathlib import Path

from payedge_connect.writeback.events import (
    PAYMENT_COMPLETED,
    PAYMENT_EVENT_SOURCE,
    PAYMENT_REVERSED,
    PaymentCompleted,
    PaymentReversed,
)

EVENTS = Path(__file__).resolve().parents[2] / "events"


def test_the_payment_completed_sample_is_a_valid_event_from_the_platform() -> None:
    event = json.loads((EVENTS / "payment-completed.json").read_text())
    assert (event["source"], event["detail-type"]) == (PAYMENT_EVENT_SOURCE, PAYMENT_COMPLETED)
    detail = PaymentCompleted.model_validate(event["detail"])
    assert str(detail.amount) == "1250.00"


def test_the_payment_reversed_sample_is_a_valid_event_from_the_platform() -> None:
    event = json.loads((EVENTS / "payment-reversed.json").read_text())
    assert (event["source"], event["detail-type"]) == (PAYMENT_EVENT_SOURCE, PAYMENT_REVERSED)
    detail = PaymentReversed.model_validate(event["detail"])
    assert detail.payment_order_number == "PO-2026-000123" and detail.reason


def test_every_console_sample_names_an_action() -> None:
    platform = {"payment-completed.json", "payment-reversed.json"}
    samples = [path for path in EVENTS.glob("*.json") if path.name not in platform]
    assert samples
    for path in samples:
        assert json.loads(path.read_text()).get("action"), path.name
