#!/usr/bin/env python3
"""The request bodies the strict fakes accepted, checked with each platform's official client
library (scripts/sdk-check.sh runs it over the requests the platform tests recorded).

Each record is one request a fake accepted (`kind`, `method`, `path`, `query`, `headers`,
`body`; credentials blanked). Where the platform's library models the body, the body goes
through the library's own models with strict validation, or is rebuilt with the library's own
request builder and compared field by field; where the library cannot (TikTok's and Snap's
model only their retired APIs), the checks the platform reference lists are made by hand and
the library is used for what it still knows (TikTok's error codes).

Then every check must refuse bodies made wrong on purpose (`negative cases`): a check that
passes those is no check.

Usage: sdk_check.py DIR   (exit 1 and a list of problems when anything is wrong)
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Callable

HEX64 = re.compile(r"^[0-9a-f]{64}$")
ROOT = Path(__file__).resolve().parents[2]


def hex64(value) -> bool:
    return isinstance(value, str) and bool(HEX64.match(value))


def unknown(obj: dict, allowed: set[str], where: str) -> list[str]:
    return [f"{where}.{key}: not a field of the API" for key in obj if key not in allowed]


def digits(value, count: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and len(str(value)) == count


# --- Pinterest: the generated client's ConversionEvents model, strict ----------------------------

def check_pinterest(record: dict) -> list[str]:
    from openapi_generated.pinterest_client.configuration import Configuration
    from openapi_generated.pinterest_client.model.conversion_events import ConversionEvents
    from openapi_generated.pinterest_client.model_utils import (
        OpenApiModel,
        validate_and_convert_types,
    )

    def unknown_keys(obj, cls, path="$"):
        if not (isinstance(cls, type) and issubclass(cls, OpenApiModel)) or not isinstance(obj, dict):
            return []
        names, bad = {v: k for k, v in cls.attribute_map.items()}, []
        for key, value in obj.items():
            if key not in names:
                bad.append(f"{path}.{key}: not in the client's model")
                continue
            kind = cls.openapi_types[names[key]][0]
            if isinstance(kind, list):
                for i, item in enumerate(value or []):
                    bad += unknown_keys(item, kind[0], f"{path}.{key}[{i}]")
            else:
                bad += unknown_keys(value, kind, f"{path}.{key}")
        return bad

    body = record["body"]
    problems = []
    try:
        # It converts in place: a copy.
        validate_and_convert_types(copy.deepcopy(body), (ConversionEvents,), ["body"], True, True,
                                   Configuration(discard_unknown_keys=False))
    except Exception as error:  # the client raises ApiTypeError, ApiValueError, ApiAttributeError…
        problems.append(f"ConversionEvents refuses the body: {type(error).__name__}: {error}")
    problems += unknown_keys(body, ConversionEvents)
    if not re.fullmatch(r"/v5/ad_accounts/\d+/events", record["path"]):
        problems.append(f"path {record['path']}")
    if record["headers"].get("authorization") != "[redacted]":
        problems.append("no Authorization header")
    names = {"add_to_cart", "checkout", "custom", "lead", "page_visit", "search", "signup",
             "view_category", "watch_video"}
    for i, event in enumerate(body.get("data", [])):
        where = f"$.data[{i}]"
        if event.get("event_name") not in names:
            problems.append(f"{where}.event_name {event.get('event_name')!r}")
        if event.get("action_source") not in {"web", "app_android", "app_ios", "offline"}:
            problems.append(f"{where}.action_source {event.get('action_source')!r}")
        if not digits(event.get("event_time"), 10):
            problems.append(f"{where}.event_time is not Unix seconds")
        user = event.get("user_data", {})
        for field in ("em", "ph", "external_id"):
            if not all(hex64(v) for v in user.get(field, [])):
                problems.append(f"{where}.user_data.{field} is not SHA-256 hex")
    return problems


# --- LinkedIn: the client's own BATCH_CREATE request, compared ------------------------------------

def check_linkedin(record: dict) -> list[str]:
    from linkedin_api.clients.restli.client import RestliClient

    body = record["body"]
    elements = body.get("elements")
    if not isinstance(elements, list):
        return ["$.elements is not a list"]
    client, seen = RestliClient(), {}

    class Stop(Exception):
        pass

    def capture(prepared, **_):
        seen["request"] = prepared
        raise Stop()

    client.session.send = capture
    version = record["headers"].get("linkedin-version", "")
    try:
        client.batch_create(resource_path="/conversionEvents", entities=elements,
                            access_token="T", version_string=version)
    except Stop:
        pass
    want = seen.get("request")
    if want is None:
        return ["the client built no request"]
    problems = []
    if want.method != record["method"]:
        problems.append(f"method {record['method']}, the client sends {want.method}")
    want_path = re.sub(r"^https://api\.linkedin\.com", "", want.url.split("?")[0])
    if want_path != record["path"]:
        problems.append(f"path {record['path']}, the client sends {want_path}")
    for name, value in want.headers.items():
        name = name.lower()
        if name in {"authorization", "user-agent", "content-length", "accept-encoding", "accept",
                    "connection"}:
            continue
        got = record["headers"].get(name)
        if got is None or got.lower() != value.lower():
            problems.append(f"header {name}: {got!r}, the client sends {value!r}")
    if json.loads(want.body) != body:
        problems.append("the body differs from the one the client builds from its elements")
    if not re.fullmatch(r"\d{6}", version):
        problems.append(f"LinkedIn-Version {version!r} is not YYYYMM")
    allowed = {"conversion", "conversionHappenedAt", "conversionValue", "eventId", "user"}
    for i, element in enumerate(elements):
        where = f"$.elements[{i}]"
        problems += unknown(element, allowed, where)
        if not re.fullmatch(r"urn:lla:llaPartnerConversion:\d+", str(element.get("conversion"))):
            problems.append(f"{where}.conversion is not a conversion rule URN")
        if not digits(element.get("conversionHappenedAt"), 13):
            problems.append(f"{where}.conversionHappenedAt is not epoch milliseconds")
        value = element.get("conversionValue")
        if value is not None and not (isinstance(value.get("amount"), str)
                                      and re.fullmatch(r"[A-Z]{3}", str(value.get("currencyCode")))):
            problems.append(f"{where}.conversionValue needs a string amount and a currency")
        user = element.get("user")
        if not isinstance(user, dict) or not isinstance(user.get("userIds"), list):
            problems.append(f"{where}.user.userIds is required (it may be empty)")
            continue
        for j, uid in enumerate(user["userIds"]):
            kind = uid.get("idType")
            if kind not in {"SHA256_EMAIL", "LINKEDIN_FIRST_PARTY_ADS_TRACKING_UUID", "ACXIOM_ID",
                            "ORACLE_MOAT_ID"}:
                problems.append(f"{where}.user.userIds[{j}].idType {kind!r}")
            if kind == "SHA256_EMAIL" and not hex64(uid.get("idValue")):
                problems.append(f"{where}.user.userIds[{j}].idValue is not SHA-256 hex")
    return problems


# --- TikTok: Events API 2.0 by hand; the SDK's error codes against ours --------------------------

TIKTOK_EVENT_KEYS = {"event", "event_time", "event_id", "user", "properties", "page",
                     "limited_data_use", "lead"}
TIKTOK_USER_KEYS = {"ttclid", "ttp", "email", "phone", "external_id", "ip", "user_agent", "locale",
                    "idfa", "idfv", "gaid"}
TIKTOK_PROPERTY_KEYS = {"value", "currency", "contents", "content_type", "order_id", "content_ids",
                        "num_items", "query", "description", "shop_id"}
TIKTOK_CONTENT_KEYS = {"content_id", "content_name", "content_category", "price", "quantity",
                       "brand"}


def check_tiktok(record: dict) -> list[str]:
    body = record["body"]
    problems = unknown(body, {"event_source", "event_source_id", "data", "test_event_code",
                              "partner_name"}, "$")
    if record["path"] != "/open_api/v1.3/event/track/":
        problems.append(f"path {record['path']}")
    if record["headers"].get("access-token") != "[redacted]":
        problems.append("no Access-Token header")
    if body.get("event_source") not in {"web", "app", "offline", "crm"}:
        problems.append(f"$.event_source {body.get('event_source')!r}")
    if not body.get("event_source_id"):
        problems.append("$.event_source_id is required")
    data = body.get("data")
    if not isinstance(data, list) or not 1 <= len(data) <= 1000:
        return problems + ["$.data must hold 1 to 1,000 events"]
    for i, event in enumerate(data):
        where = f"$.data[{i}]"
        problems += unknown(event, TIKTOK_EVENT_KEYS, where)
        if not isinstance(event.get("event"), str) or not event["event"]:
            problems.append(f"{where}.event is required")
        if not digits(event.get("event_time"), 10):
            problems.append(f"{where}.event_time is not Unix seconds")
        if not isinstance(event.get("event_id"), str):
            problems.append(f"{where}.event_id must be a string")
        if not isinstance(event.get("limited_data_use", False), bool):
            problems.append(f"{where}.limited_data_use must be a boolean")
        user = event.get("user", {})
        problems += unknown(user, TIKTOK_USER_KEYS, f"{where}.user")
        for field in ("email", "phone", "external_id"):
            values = user.get(field, [])
            values = values if isinstance(values, list) else [values]
            if not all(hex64(v) for v in values):
                problems.append(f"{where}.user.{field} is not SHA-256 hex")
        for field in ("ip", "ttclid"):
            if field in user and hex64(user[field]):
                problems.append(f"{where}.user.{field} is sent raw, not hashed")
        props = event.get("properties", {})
        problems += unknown(props, TIKTOK_PROPERTY_KEYS, f"{where}.properties")
        if "value" in props:
            if not isinstance(props["value"], (int, float)) or isinstance(props["value"], bool):
                problems.append(f"{where}.properties.value must be a number")
            if not re.fullmatch(r"[A-Z]{3}", str(props.get("currency"))):
                problems.append(f"{where}.properties.currency must be ISO 4217 with a value")
        for j, content in enumerate(props.get("contents", [])):
            problems += unknown(content, TIKTOK_CONTENT_KEYS, f"{where}.properties.contents[{j}]")
            if "price" in content and not isinstance(content["price"], (int, float)):
                problems.append(f"{where}.properties.contents[{j}].price must be a number")
            if "quantity" in content and not isinstance(content["quantity"], int):
                problems.append(f"{where}.properties.contents[{j}].quantity must be an integer")
    return problems


def check_tiktok_codes() -> list[str]:
    """Our TikTok adapter retries exactly the SDK's throttling and system codes and never an
    auth or parameter code."""
    from business_api_client.tiktok_business.tiktok_code import NumericErrorCodes as C

    source = (ROOT / "crates/platforms/src/tiktok.rs").read_text()
    found = re.search(r"fn retried\(code: i64\) -> bool \{(.*?)\n\}", source, re.S)
    if not found:
        return ["tiktok.rs: fn retried(code) not found"]
    text = found.group(1)
    ours = {int(c) for c in re.findall(r"\b(\d{5})\b", text)}
    ranges = [(int(a), int(b)) for a, b in re.findall(r"\((\d{5})\.\.=(\d{5})\)", text)]
    singles = ours - {n for r in ranges for n in r}

    def retried(code: int) -> bool:
        return code in singles or any(a <= code <= b for a, b in ranges)

    problems = []
    sdk_retry = {C.ERROR_CODE_REQUEST_TOO_FREQUENT, C.ERROR_CODE_TOO_MANY_REQUESTS_BL,
                 C.ERROR_CODE_SYS_ERROR, C.ERROR_CODE_SYS_TIMEOUT, C.ERROR_CODE_MAINTENANCE}
    for code in sorted(sdk_retry):
        if not retried(code):
            problems.append(f"TikTok code {code} is a throttling or system error in the SDK "
                            "but is not retried")
    never = {C.ERROR_CODE_OK, C.ERROR_CODE_PARTIAL_OK, C.ERROR_CODE_PARAM_ERROR,
             C.ERROR_CODE_INVALID_BATCH_SIZE, C.ERROR_CODE_PII_NOT_HASHED,
             C.ERROR_CODE_ACCESS_TOKEN_EXPIRE, C.ERROR_CODE_EMPTY_ACCESS_TOKEN,
             C.ERROR_CODE_INVALID_ACCESS_TOKEN}
    for code in sorted(never):
        if retried(code):
            problems.append(f"TikTok code {code} is retried but the SDK says it is not transient")
    return problems


# --- Snap: Conversions API v3 by hand (the SDK models only v2) ------------------------------------

def check_snapchat(record: dict) -> list[str]:
    body = record["body"]
    problems = unknown(body, {"data"}, "$")
    if not re.fullmatch(r"/v3/[0-9a-f-]+/events(/validate)?", record["path"]):
        problems.append(f"path {record['path']}")
    if record["query"].get("access_token") != "[redacted]":
        problems.append("no access_token in the query")
    data = body.get("data")
    if not isinstance(data, list) or not 1 <= len(data) <= 2000:
        return problems + ["$.data must hold 1 to 2,000 events"]
    allowed = {"event_name", "event_time", "action_source", "event_id", "event_source_url",
               "user_data", "custom_data", "app_data", "opt_out", "data_processing_options",
               "data_processing_options_country", "data_processing_options_state", "integration"}
    user_keys = {"em", "ph", "external_id", "client_ip_address", "client_user_agent",
                 "sc_click_id", "sc_cookie1", "fn", "ln", "ge", "db", "ct", "st", "zp", "country",
                 "madid", "idfv", "lead_id"}
    for i, event in enumerate(data):
        where = f"$.data[{i}]"
        problems += unknown(event, allowed, where)
        if not re.fullmatch(r"[A-Z][A-Z0-9_]*", str(event.get("event_name"))):
            problems.append(f"{where}.event_name {event.get('event_name')!r}")
        if not digits(event.get("event_time"), 10):
            problems.append(f"{where}.event_time is not Unix seconds")
        if event.get("action_source") not in {"WEB", "MOBILE_APP", "OFFLINE"}:
            problems.append(f"{where}.action_source {event.get('action_source')!r}")
        user = event.get("user_data", {})
        problems += unknown(user, user_keys, f"{where}.user_data")
        for field in ("em", "ph", "external_id"):
            if not all(hex64(v) for v in user.get(field, [])):
                problems.append(f"{where}.user_data.{field} is not SHA-256 hex")
        custom = event.get("custom_data", {})
        if "value" in custom and not isinstance(custom["value"], (int, float)):
            problems.append(f"{where}.custom_data.value must be a number")
    return problems


# --- Reddit: no official client; by hand ----------------------------------------------------------

def check_reddit(record: dict) -> list[str]:
    body = record["body"]
    problems = unknown(body, {"data"}, "$")
    if not re.fullmatch(r"/api/v3/pixels/[A-Za-z0-9_]+/conversion_events", record["path"]):
        problems.append(f"path {record['path']}")
    data = body.get("data", {})
    problems += unknown(data, {"events", "test_id", "partner"}, "$.data")
    events = data.get("events")
    if not isinstance(events, list) or not 1 <= len(events) <= 1000:
        return problems + ["$.data.events must hold 1 to 1,000 events"]
    for i, event in enumerate(events):
        where = f"$.data.events[{i}]"
        if not digits(event.get("event_at"), 13):
            problems.append(f"{where}.event_at is not epoch milliseconds")
        kind = event.get("type", {}).get("tracking_type")
        if kind not in {"PAGE_VISIT", "VIEW_CONTENT", "SEARCH", "ADD_TO_CART", "ADD_TO_WISHLIST",
                        "LEAD", "PURCHASE", "SIGN_UP", "CUSTOM"}:
            problems.append(f"{where}.type.tracking_type {kind!r}")
        if (kind == "CUSTOM") != ("custom_event_name" in event.get("type", {})):
            problems.append(f"{where}: CUSTOM goes with custom_event_name and only then")
    return problems


# --- Microsoft Advertising: bingads' own SOAP types, and msads' REST models (own venv) -----------

def check_microsoft(record: dict) -> list[str]:
    from bingads.authorization import (
        AuthorizationData,
        OAuthDesktopMobileAuthCodeGrant,
        OAuthTokens,
    )
    from bingads.service_client import ServiceClient

    body = record["body"]
    problems = []
    if record["path"] != "/CampaignManagement/v13/OfflineConversions/Apply":
        problems.append(f"path {record['path']}")
    for header in ("authorization", "developertoken", "customerid", "customeraccountid"):
        if header not in record["headers"]:
            problems.append(f"no {header} header")
    rows = body.get("OfflineConversions")
    if not isinstance(rows, list) or not 1 <= len(rows) <= 1000:
        return problems + ["$.OfflineConversions must hold 1 to 1,000 conversions"]
    auth = AuthorizationData(account_id=None, customer_id=None, developer_token="T",
                             authentication=OAuthDesktopMobileAuthCodeGrant(
                                 client_id="c", oauth_tokens=OAuthTokens(access_token="T")))
    service = _bingads_service(ServiceClient, auth)
    array = service.factory.create("ArrayOfOfflineConversion")
    for i, row in enumerate(rows):
        conversion = service.factory.create("OfflineConversion")
        fields = set(conversion.__keylist__)
        for key, value in row.items():
            if key not in fields:
                problems.append(f"$.OfflineConversions[{i}].{key}: not an OfflineConversion field")
                continue
            setattr(conversion, key, value)
        if not str(row.get("ConversionTime", "")).endswith("Z"):
            problems.append(f"$.OfflineConversions[{i}].ConversionTime is not UTC with a Z")
        array.OfflineConversion.append(conversion)
    try:
        # The SOAP envelope built offline from the bundled WSDL: the types must marshal.
        service.ApplyOfflineConversions(OfflineConversions=array)
    except Exception as error:
        problems.append(f"bingads cannot build ApplyOfflineConversions: {error}")
    return problems


def check_microsoft_adjustments(record: dict) -> list[str]:
    """`ApplyOfflineConversionAdjustments`: every row an `OfflineConversionAdjustment` of the
    bundled WSDL, and the SOAP envelope must build."""
    from bingads.authorization import (
        AuthorizationData,
        OAuthDesktopMobileAuthCodeGrant,
        OAuthTokens,
    )
    from bingads.service_client import ServiceClient

    body = record["body"]
    problems = []
    if record["path"] != "/CampaignManagement/v13/OfflineConversionAdjustments/Apply":
        problems.append(f"path {record['path']}")
    for header in ("authorization", "developertoken", "customerid", "customeraccountid"):
        if header not in record["headers"]:
            problems.append(f"no {header} header")
    unknown_top = set(body) - {"OfflineConversionAdjustments"}
    if unknown_top:
        problems.append(f"$: unknown keys {sorted(unknown_top)}")
    rows = body.get("OfflineConversionAdjustments")
    if not isinstance(rows, list) or not 1 <= len(rows) <= 1000:
        return problems + ["$.OfflineConversionAdjustments must hold 1 to 1,000 adjustments"]
    auth = AuthorizationData(account_id=None, customer_id=None, developer_token="T",
                             authentication=OAuthDesktopMobileAuthCodeGrant(
                                 client_id="c", oauth_tokens=OAuthTokens(access_token="T")))
    service = _bingads_service(ServiceClient, auth)
    array = service.factory.create("ArrayOfOfflineConversionAdjustment")
    for i, row in enumerate(rows):
        adjustment = service.factory.create("OfflineConversionAdjustment")
        fields = set(adjustment.__keylist__)
        for key, value in row.items():
            if key not in fields:
                problems.append(f"$.OfflineConversionAdjustments[{i}].{key}: "
                                "not an OfflineConversionAdjustment field")
                continue
            setattr(adjustment, key, value)
        if row.get("AdjustmentType") not in ("Restate", "Retract"):
            problems.append(f"$.OfflineConversionAdjustments[{i}].AdjustmentType "
                            f"{row.get('AdjustmentType')!r}")
        for key in ("ConversionTime", "AdjustmentTime"):
            if not str(row.get(key, "")).endswith("Z"):
                problems.append(f"$.OfflineConversionAdjustments[{i}].{key} is not UTC with a Z")
        array.OfflineConversionAdjustment.append(adjustment)
    try:
        service.ApplyOfflineConversionAdjustments(OfflineConversionAdjustments=array)
    except Exception as error:
        problems.append(f"bingads cannot build ApplyOfflineConversionAdjustments: {error}")
    return problems


def _bingads_service(service_client, auth):
    return service_client("CampaignManagementService", 13, auth, environment="production",
                          nosend=True)


def check_microsoft_rest(records: list[dict]) -> list[str]:
    """msads' pydantic models: a round trip must give back exactly what was sent."""
    python = os.environ.get("SDK_MSADS_PYTHON")
    if not python:
        return ["SDK_MSADS_PYTHON is not set (msads lives in a venv of its own)"]
    script = Path(__file__).with_name("sdk_check_msads.py")
    done = subprocess.run([python, str(script)], input=json.dumps([r["body"] for r in records]),
                          capture_output=True, text=True, check=False)
    if done.returncode not in (0, 1):
        return [f"msads check failed to run: {done.stderr.strip()[-2000:]}"]
    return [line for line in done.stdout.splitlines() if line.strip()]


# --- Google: the Ads API's and Data Manager's own messages, parsed strictly -----------------------

def check_google_ads(record: dict) -> list[str]:
    from google.ads.googleads.v26.services.types.conversion_upload_service import (
        UploadClickConversionsRequest,
    )
    return _proto(UploadClickConversionsRequest, record)


def check_google_adjustments(record: dict) -> list[str]:
    from google.ads.googleads.v26.services.types.conversion_adjustment_upload_service import (
        UploadConversionAdjustmentsRequest,
    )
    return _proto(UploadConversionAdjustmentsRequest, record)


def check_data_manager(record: dict) -> list[str]:
    from google.ads.datamanager_v1.types import IngestEventsRequest
    return _proto(IngestEventsRequest, record)


def _proto(message, record: dict) -> list[str]:
    try:
        parsed = message.from_json(json.dumps(record["body"]), ignore_unknown_fields=False)
    except Exception as error:
        return [f"{message.__name__} refuses the body: {str(error).splitlines()[0]}"]
    back = json.loads(message.to_json(parsed, use_integers_for_enums=False))
    problems = []
    _compare(record["body"], back, "$", problems)
    return problems


def _compare(sent, back, where: str, problems: list[str]):
    """Every value sent comes back the same from the parsed message (enums by name, numbers as
    numbers, int64 as strings)."""
    if isinstance(sent, dict):
        for key, value in sent.items():
            if value in (False, 0, "", [], {}) and key not in (back or {}):
                continue  # proto3 defaults are not written back
            _compare(value, (back or {}).get(key), f"{where}.{key}", problems)
    elif isinstance(sent, list):
        if not isinstance(back, list) or len(back) != len(sent):
            problems.append(f"{where}: the message holds {back!r}")
            return
        for i, (a, b) in enumerate(zip(sent, back)):
            _compare(a, b, f"{where}[{i}]", problems)
    elif sent != back and str(sent) != str(back):
        problems.append(f"{where}: sent {sent!r}, the message reads {back!r}")


# --- Meta: facebook-business' own server-side Event, rebuilt and compared ------------------------

def check_meta(record: dict) -> list[str]:
    from facebook_business.adobjects.serverside.content import Content
    from facebook_business.adobjects.serverside.custom_data import CustomData
    from facebook_business.adobjects.serverside.event import Event
    from facebook_business.adobjects.serverside.user_data import UserData

    body = record["body"]
    problems = unknown(body, {"data", "partner_agent", "test_event_code"}, "$")
    if not re.fullmatch(r"/v\d+\.0/\d+/events", record["path"]):
        problems.append(f"path {record['path']}")
    if record["query"].get("access_token") != "[redacted]":
        problems.append("no access_token in the query")
    for i, sent in enumerate(body.get("data", [])):
        where = f"$.data[{i}]"
        try:
            user = sent.get("user_data", {})
            user_data = UserData(
                emails=user.get("em"), phones=user.get("ph"), external_ids=user.get("external_id"),
                client_ip_address=user.get("client_ip_address"),
                client_user_agent=user.get("client_user_agent"), fbc=user.get("fbc"),
                fbp=user.get("fbp"))
            custom = sent.get("custom_data")
            custom_data = None
            if custom is not None:
                contents = [Content(product_id=c.get("id"), quantity=c.get("quantity"),
                                    item_price=c.get("item_price")) for c in custom.get("contents", [])]
                custom_data = CustomData(value=custom.get("value"), currency=custom.get("currency"),
                                         order_id=custom.get("order_id"),
                                         content_ids=custom.get("content_ids"),
                                         content_type=custom.get("content_type"),
                                         contents=contents or None)
            event = Event(event_name=sent.get("event_name"), event_time=sent.get("event_time"),
                          event_id=sent.get("event_id"),
                          event_source_url=sent.get("event_source_url"),
                          action_source=_meta_action_source(sent.get("action_source")),
                          user_data=user_data, custom_data=custom_data)
            built = event.normalize()
        except Exception as error:  # the SDK raises TypeError/ValueError on a wrong field
            problems.append(f"{where}: facebook-business refuses it: {error}")
            continue
        extra = set(sent) - set(built)
        if extra:
            problems.append(f"{where}: {sorted(extra)} are not fields of the SDK's Event")
        _compare(sent, built, where, problems)
    return problems


def _meta_action_source(value):
    from facebook_business.adobjects.serverside.action_source import ActionSource
    return ActionSource(value) if value is not None else None


# --- the run ------------------------------------------------------------------------------------

CHECKS: dict[str, Callable[[dict], list[str]]] = {
    "pinterest_events": check_pinterest,
    "linkedin_conversion_events": check_linkedin,
    "tiktok_events": check_tiktok,
    "snapchat_events": check_snapchat,
    "reddit_conversion_events": check_reddit,
    "microsoft_offline_conversions": check_microsoft,
    "microsoft_offline_conversion_adjustments": check_microsoft_adjustments,
    "google_ads_upload_click_conversions": check_google_ads,
    "google_ads_upload_conversion_adjustments": check_google_adjustments,
    "google_data_manager_ingest": check_data_manager,
    "meta_events": check_meta,
}


def set_at(body, path: list, value):
    target = body
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value


# Bodies made wrong on purpose: each must be refused by its check. (kind, what, path, value)
NEGATIVE = [
    ("pinterest_events", "event_time as a string", ["data", 0, "event_time"], "1763640000"),
    ("pinterest_events", "an unknown key", ["data", 0, "event_nmae"], "lead"),
    ("pinterest_events", "no user_data", ["data", 0, "user_data"], None),
    ("linkedin_conversion_events", "conversionHappenedAt in seconds",
     ["elements", 0, "conversionHappenedAt"], 1763640000),
    ("linkedin_conversion_events", "an unknown key", ["elements", 0, "eventID"], "x"),
    ("tiktok_events", "event_time in milliseconds", ["data", 0, "event_time"], 1763640000000),
    ("tiktok_events", "an unhashed email", ["data", 0, "user", "email"], ["a@example.com"]),
    ("snapchat_events", "a lower-case action_source", ["data", 0, "action_source"], "web"),
    ("reddit_conversion_events", "event_at in seconds", ["data", "events", 0, "event_at"],
     1763640000),
    ("microsoft_offline_conversions", "a mis-cased key",
     ["OfflineConversions", 0, "conversionName"], "Purchase"),
    ("microsoft_offline_conversion_adjustments", "a key of another request",
     ["OfflineConversionAdjustments", 0, "ConversionValue"], 70.5),
    ("microsoft_offline_conversion_adjustments", "an unknown adjustment type",
     ["OfflineConversionAdjustments", 0, "AdjustmentType"], "Restatement"),
    ("google_ads_upload_click_conversions", "an unknown field",
     ["conversions", 0, "orderID"], "x"),
    ("google_ads_upload_click_conversions", "conversionValue as an object",
     ["conversions", 0, "conversionValue"], {"units": 1}),
    ("google_data_manager_ingest", "an unknown enum value", ["encoding"], "HEXADECIMAL"),
    ("google_data_manager_ingest", "an unknown field", ["events", 0, "transactionID"], "x"),
    ("meta_events", "event_time as a string", ["data", 0, "event_time"], "1763640000"),
    ("meta_events", "an unknown action_source", ["data", 0, "action_source"], "web_site"),
    ("meta_events", "a user_data key the SDK does not know", ["data", 0, "user_data", "email"],
     ["a" * 64]),
    ("google_ads_upload_click_conversions", "an unknown consent value",
     ["conversions", 0, "consent", "adUserData"], "YES"),
]


def main(directory: str) -> int:
    records: dict[str, list[dict]] = {}
    for path in sorted(Path(directory).glob("*.json")):
        record = json.loads(path.read_text())
        records.setdefault(record["kind"], []).append(record)
    problems: list[str] = []
    for kind, check in CHECKS.items():
        found = records.get(kind, [])
        if not found:
            problems.append(f"{kind}: no request was recorded")
            continue
        for record in found:
            problems += [f"{kind}: {p}" for p in check(record)]
        print(f"sdk-check: {kind}: {len(found)} requests checked", file=sys.stderr)
    rest = records.get("microsoft_offline_conversions", [])
    if rest:
        problems += [f"microsoft_offline_conversions (msads): {p}"
                     for p in check_microsoft_rest(rest)]
    adjustments = records.get("microsoft_offline_conversion_adjustments", [])
    if adjustments:
        problems += [f"microsoft_offline_conversion_adjustments (msads): {p}"
                     for p in check_microsoft_rest(adjustments)]
    problems += check_tiktok_codes()

    # Negative cases: the checks must refuse bodies made wrong.
    for kind, what, path, value in NEGATIVE:
        if not records.get(kind):
            continue
        record = copy.deepcopy(records[kind][0])
        if value is None:
            target = record["body"]
            for key in path[:-1]:
                target = target[key]
            target.pop(path[-1], None)
        else:
            set_at(record["body"], path, value)
        if not CHECKS[kind](record):
            problems.append(f"{kind}: the check passed a body with {what}")
    if rest:
        wrong = copy.deepcopy(rest[0])
        set_at(wrong["body"], ["OfflineConversions", 0, "ConversionValue"], "149.0")
        if not check_microsoft_rest([wrong]):
            problems.append("microsoft_offline_conversions: msads passed ConversionValue as a string")
    negatives = sum(1 for kind, *_ in NEGATIVE if records.get(kind)) + (1 if rest else 0)
    print(f"sdk-check: {negatives} bodies made wrong on purpose", file=sys.stderr)

    for problem in problems:
        print(problem)
    return 1 if problems else 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1]))
