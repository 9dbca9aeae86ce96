"""Schemathesis hooks for Convrelay's contract test.

JSON Schema cannot state a few rules the server keeps, all of them written in the schemas'
descriptions:

- a timestamp (of an event or a click) must lie between 2000-01-01T00:00:00Z and five minutes after the time it is
  received (a window relative to "now");
- a phone number must be valid for its country (libphonenumber's numbering plans);
- a currency must be an ISO 4217 code (any case);
- an amount or price has at most 4 decimal places, counted on the digits of the JSON number
  (a float drawn by the generator prints as `1.0000000000000002e-05`);
- `GET /v1/events` (and its `HEAD`) takes `invoiceId` or `leadId`, not both, and neither with
  the other kind's `event`;
- an `Idempotency-Key` that was used before with another body is answered 422 (by design), so
  the keys of well-formed requests must be fresh;
- a destination's `pixelId` and conversion action ids, when numbers, must be written as integer
  literals (`42`): JSON Schema's `integer` also admits `42.0`, which the server refuses with
  `type` (a product's `quantity` takes `2.0`; a known gap, to be settled in the server);
- whether a change (`PATCH /v1/destinations/{id}`) of `type`, `events`, `config` or
  `credentials` is valid depends on the stored destination (its type, the conversion actions
  it has for the kinds it subscribes to), which the generator cannot know, and the run does
  reach real destinations. So well-formed changes keep `name` and `enabled` (and an empty
  `config`) only; examples.py sends changes of the others to destinations it knows;
- a webhook destination's `config.url` must parse as a URL (`https`, or `http` on loopback):
  the pattern of the schema only sketches that. Here every well-formed destination gets a
  loopback URL where nothing listens (CONTRACT_CLOSED_URL), so that no request leaves the
  machine whatever the generator drew;
- a conversion-event definition's `destinations` must name destinations of the workspace,
  which the generator cannot know: well-formed definitions are sent without them (examples.py
  sends definitions that map real destinations);
- a report's `to` must be after its `from`;
- a time (`from`, `to`, `since`) must still be a year 0000 to 9999 once converted to UTC
  (`9999-12-31T23:59:59-23:59` is not).

So, for the requests that the generator means to be valid (positive mode) and only for those,
`before_call` brings such values inside the rules. Negative requests are sent as drawn.
"""

from __future__ import annotations

import os
import re
import uuid
from datetime import date, datetime, timedelta, timezone
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
CLOSED_URL = os.environ.get("CONTRACT_CLOSED_URL", "http://127.0.0.1:9") + "/hook"


def _instant(value: object) -> datetime | None:
    """The UTC instant of an RFC 3339 time, or None when it has none the server can hold."""
    if not isinstance(value, str):
        return None
    try:
        at = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
        if at.tzinfo is None:
            return None
        return at.astimezone(timezone.utc)
    except (ValueError, OverflowError):
        return None


def _day(value: object) -> date | None:
    """The UTC day of a report bound (a date, or a time at midnight UTC), or None."""
    if not isinstance(value, str):
        return None
    if len(value) == 10:
        try:
            return date.fromisoformat(value)
        except ValueError:
            return None
    at = _instant(value)
    if at is None or at.time() != datetime.min.time() or not 1 <= at.year <= 9999:
        return None
    return at.date()


def _fix_times(holder: dict, *names: str) -> None:
    for name in names:
        if holder.get(name) is not None and _instant(holder[name]) is None:
            holder[name] = "2026-04-10T12:34:56.000Z"


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
    elif path == "/v1/persons/erase" and isinstance(body, dict):
        _fix_event(body, 0)
    elif path == "/v1/clicks/batch" and isinstance(body, dict):
        clicks = body.get("clicks")
        if isinstance(clicks, list):
            for index, click in enumerate(clicks):
                _fix_event(click, index)
    elif path == "/v1/destinations" and isinstance(body, dict):
        config = body.get("config")
        if isinstance(config, dict):
            if body.get("type") == "webhook" or "url" in config:
                config["url"] = CLOSED_URL
            if isinstance(config.get("pixelId"), float):
                config["pixelId"] = int(config["pixelId"])
            actions = config.get("conversionActions")
            if isinstance(actions, dict):
                for kind, action in actions.items():
                    if isinstance(action, float):
                        actions[kind] = int(action)
    elif path == "/v1/destinations/{id}" and isinstance(body, dict):
        for name in ("type", "events", "credentials"):
            body.pop(name, None)
        if body.get("config") != {}:
            body.pop("config", None)
    elif path == "/v1/conversion-events/{eventName}" and isinstance(body, dict):
        # A definition's destinations must exist in the workspace (the generator cannot know
        # their ids; examples.py maps real ones), and its value follows the amount rules.
        body.pop("destinations", None)
        value = body.get("value")
        if isinstance(value, dict) and "amount" in value:
            _fix_event(value, 0)
    elif path == "/v1/dispatches/retry" and isinstance(body, dict):
        _fix_times(body, "since")
    elif path == "/v1/dispatches" and case.query:
        _fix_times(case.query, "since")
    elif path == "/v1/reports/conversions" and case.query:
        # Reports count whole UTC days, at most 1000 periods of a time series.
        query = case.query
        start, end = _day(query.get("from")), _day(query.get("to"))
        if start is None or end is None or end <= start or (end - start).days > 900:
            query["from"], query["to"] = "2026-04-01", "2026-05-01"
    elif path == "/v1/dispatches/health" and case.query:
        query = case.query
        _fix_times(query, "from", "to")
        start, end = _instant(query.get("from")), _instant(query.get("to"))
        if start is not None and end is not None and not (start < end <= start + timedelta(days=30)):
            query["from"], query["to"] = "2026-04-01T00:00:00Z", "2026-04-02T00:00:00Z"
        elif (start is None) != (end is None):
            query.pop("from", None)
            query.pop("to", None)
    elif path == "/v1/events" and case.method.upper() in ("GET", "HEAD") and case.query:
        query = case.query
        _fix_times(query, "since")
        if query.get("invoiceId") is not None and query.get("leadId") is not None:
            del query["leadId"]
        if query.get("invoiceId") is not None and query.get("event") == "lead":
            del query["event"]
        if query.get("leadId") is not None and query.get("event") == "sale":
            del query["event"]
