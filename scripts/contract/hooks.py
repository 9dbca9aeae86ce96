"""Schemathesis hooks for Convrelay's contract test.

JSON Schema cannot state a few rules the server keeps, all of them written in the schemas'
descriptions:

- a timestamp (of an event or a click) must lie between 2000-01-01T00:00:00Z and five minutes after the time it is
  received (a window relative to "now");
- a phone number must be valid for its country (libphonenumber's numbering plans);
- a currency must be an ISO 4217 code (any case);
- an amount or price has at most 4 decimal places, counted on the digits of the JSON number
  (a float drawn by the generator prints as `1.0000000000000002e-05`);
- `GET /v1/events` takes `invoiceId` or `leadId`, not both, and neither with the other kind's
  `event`;
- an `Idempotency-Key` that was used before with another body is answered 422 (by design), so
  the keys of well-formed requests must be fresh;
- a product's `quantity` must be written as an integer literal (`2`): JSON Schema's `integer`
  also admits `2.0`, which the server refuses with `type` (a known gap between the two, to be
  settled in the server or stated in the API).

So, for the requests that the generator means to be valid (positive mode) and only for those,
`before_call` brings such values inside the rules. Negative requests are sent as drawn.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation

import schemathesis

# Numbers that libphonenumber holds valid, in the spellings the API accepts.
VALID_PHONES = (
    "+14155550123",
    "+1 (415) 555-0123",
    "tel:+1-415-555-0123",
    "+44 20 7946 0958",
    "0044 20 7946 0958",
)
VALID_CURRENCIES = {"USD", "EUR", "GBP", "JPY", "CHF", "CAD", "AUD", "SEK", "BRL", "INR"}
EARLIEST = datetime(2000, 1, 1, tzinfo=timezone.utc)


def _in_window(value: object) -> bool:
    if not isinstance(value, str):
        return True
    try:
        at = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return False
    if at.tzinfo is None:
        return False
    return EARLIEST <= at <= datetime.now(timezone.utc)


def _four_places(value: object) -> object:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return value
    try:
        exact = Decimal(repr(value))
    except InvalidOperation:
        return value
    if exact == exact.quantize(Decimal("0.0001")) and "e" not in repr(value).lower():
        return value
    return float(round(exact, 4))


def _fix_event(event: object, index: int) -> None:
    if not isinstance(event, dict):
        return
    if "timestamp" in event and not _in_window(event["timestamp"]):
        event["timestamp"] = "2026-04-10T12:34:56.000Z"
    phone = event.get("phone")
    if isinstance(phone, str) and phone not in VALID_PHONES:
        event["phone"] = VALID_PHONES[index % len(VALID_PHONES)]
    currency = event.get("currency")
    if isinstance(currency, str) and currency.strip().upper() not in VALID_CURRENCIES:
        event["currency"] = "USD"
    if "amount" in event:
        event["amount"] = _four_places(event["amount"])
    products = event.get("products")
    if isinstance(products, list):
        for product in products:
            if isinstance(product, dict) and "price" in product:
                product["price"] = _four_places(product["price"])
            if isinstance(product, dict) and isinstance(product.get("quantity"), float):
                product["quantity"] = int(product["quantity"])


@schemathesis.hook
def before_call(context, case, kwargs):
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive:
        return
    headers = case.headers or {}
    for name in list(headers):
        if name.lower() == "idempotency-key":
            headers[name] = f"contract-{uuid.uuid4()}"
    body = case.body
    path = case.operation.path
    if path == "/v1/events" and case.method.upper() == "POST":
        _fix_event(body, 0)
    elif path == "/v1/events/batch" and isinstance(body, dict):
        events = body.get("events")
        if isinstance(events, list):
            for index, event in enumerate(events):
                _fix_event(event, index)
    elif path == "/v1/clicks" and isinstance(body, dict):
        _fix_event(body, 0)
    elif path == "/v1/clicks/batch" and isinstance(body, dict):
        clicks = body.get("clicks")
        if isinstance(clicks, list):
            for index, click in enumerate(clicks):
                _fix_event(click, index)
    elif path == "/v1/events" and case.method.upper() == "GET" and case.query:
        query = case.query
        if query.get("invoiceId") is not None and query.get("leadId") is not None:
            del query["leadId"]
        if query.get("invoiceId") is not None and query.get("event") == "lead":
            del query["event"]
        if query.get("leadId") is not None and query.get("event") == "sale":
            del query["event"]
