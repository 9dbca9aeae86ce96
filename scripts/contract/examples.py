"""Checks the examples of openapi.yaml and schemas/ against their schemas and against the server.

1. Every JSON Schema of schemas/ is a valid 2020-12 schema, and openapi.yaml has no duplicate
   keys (YAML loaders keep the last one silently).
2. Every example validates against the schema it illustrates: `examples` of each JSON Schema,
   and in openapi.yaml the examples of request bodies, responses, parameters and headers. A
   request example marked `x-schema-valid: false` shows how a rejection is answered and must
   break its schema.
3. Every request example is sent to the server and must get its documented answer: the
   `x-expected-status` of an openapi.yaml example; for the `examples` of schemas/, 202 for a new
   event and 200 for a repeated natural key (`invoiceId`, `leadId`). The answer's body must
   validate against the response schema documented for its status, and its headers must carry
   the documented required headers. An example with `x-capture: NAME` keeps the `id` of its
   answer under NAME; one with `x-path-params: {param: NAME}` is sent to its path with that
   id filled in, one with `x-path-values: {param: VALUE}` with that value, percent-encoded
   (examples are sent in document order).
4. The documented behaviours that no single example shows: the problem answers (401, 403, 404,
   405, 400, 413, 415, 422), Idempotency-Key replay and reuse, pagination, reading an event back;
   destinations, dispatches (failed, retried, conflicting), retractions, reports, /metrics and
   /ui. The server must run with CONVRELAY_SECRET_KEY and with the platforms' addresses on a
   port where nothing listens, so that dispatches fail quickly (CONVRELAY_RETRY_* shrunk).
5. With OTHER_BASE_URL and METRICS_TOKEN: a second server on the same database without
   CONVRELAY_SECRET_KEY and with CONVRELAY_METRICS_TOKEN answers destinations with 503
   `secret-key-missing` and /metrics only with the token.

The database must be fresh: the expected statuses of natural keys depend on it.

    examples.py ROOT BASE_URL KEY INGEST_ONLY_KEY [OTHER_BASE_URL METRICS_TOKEN]
"""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request
import uuid
from decimal import Decimal
from pathlib import Path

import yaml
from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

BASE_URI = "https://contract.invalid/"
SCHEMA_FILES = ("common.json", "lead.json", "sale.json", "event.json", "batch.json", "click.json", "problem.json")

failures: list[str] = []
checked = 0


def fail(message: str) -> None:
    failures.append(message)
    print(f"  FAIL {message}")


def ok() -> None:
    global checked
    checked += 1


class UniqueKeyLoader(yaml.SafeLoader):
    pass


def _unique_mapping(loader: UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep)


UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)


def load_documents(root: Path) -> tuple[dict, dict[str, dict], Registry]:
    spec = yaml.load((root / "openapi.yaml").read_text(), Loader=UniqueKeyLoader)
    schemas = {}
    resources = [(BASE_URI + "openapi.yaml", Resource(contents=spec, specification=DRAFT202012))]
    for name in SCHEMA_FILES:
        schema = json.loads((root / "schemas" / name).read_text())
        Draft202012Validator.check_schema(schema)
        schemas[name] = schema
        resources.append((BASE_URI + "schemas/" + name, Resource(contents=schema, specification=DRAFT202012)))
    return spec, schemas, Registry().with_resources(resources)


def validator(registry: Registry, ref: str) -> Draft202012Validator:
    return Draft202012Validator({"$ref": ref}, registry=registry, format_checker=FormatChecker())


def validate(registry: Registry, ref: str, instance: object, what: str) -> bool:
    errors = sorted(validator(registry, ref).iter_errors(instance), key=lambda e: list(e.absolute_path))
    if errors:
        fail(f"{what}: " + "; ".join(f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors[:5]))
        return False
    ok()
    return True


def pointer(*parts: str) -> str:
    return "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


METHODS = ("get", "put", "post", "patch", "delete", "head", "options", "trace")


def operations(item: dict) -> list[tuple[str, dict]]:
    """The operations of a path item (leaving out its shared `parameters`, `summary`, ...)."""
    return [(method, operation) for method, operation in item.items() if method in METHODS]


def parameters_of(item: dict, operation: dict) -> list[tuple[str, dict]]:
    """(JSON pointer to it, parameter) for the path item's and the operation's parameters."""
    found = []
    for where, holder in (("item", item), ("operation", operation)):
        for index, parameter in enumerate(holder.get("parameters", [])):
            found.append((where, index, parameter))
    return found


def example_values(holder: dict) -> list[tuple[str, object, dict]]:
    found = []
    if "example" in holder:
        found.append(("example", holder["example"], {}))
    for name, example in (holder.get("examples") or {}).items():
        if isinstance(example, dict) and "value" in example:
            found.append((name, example["value"], example))
    return found


def resolve(spec: dict, node: dict) -> dict:
    while isinstance(node, dict) and "$ref" in node and node["$ref"].startswith("#/components/"):
        target = spec
        for part in node["$ref"][2:].split("/"):
            target = target[part]
        node = target
    return node


def check_static(spec: dict, schemas: dict[str, dict], registry: Registry) -> None:
    print("examples of schemas/ against their schemas")
    for name, schema in schemas.items():
        for index, example in enumerate(schema.get("examples", [])):
            validate(registry, BASE_URI + "schemas/" + name, example, f"schemas/{name} examples[{index}]")
    print("examples of openapi.yaml against their schemas")
    for path, item in spec["paths"].items():
        for method, operation in operations(item):
            for where, index, raw in parameters_of(item, operation):
                parameter = resolve(spec, raw)
                for name, value, _ in example_values(parameter):
                    if "$ref" in raw:
                        ref = BASE_URI + "openapi.yaml#/" + raw["$ref"][2:] + "/schema"
                    elif where == "item":
                        ref = BASE_URI + "openapi.yaml#/" + pointer("paths", path, "parameters", str(index), "schema")
                    else:
                        ref = BASE_URI + "openapi.yaml#/" + pointer("paths", path, method, "parameters", str(index), "schema")
                    validate(registry, ref, value, f"{method.upper()} {path} parameter {parameter['name']} {name}")
            body = operation.get("requestBody", {}).get("content", {})
            for media, content in body.items():
                ref = BASE_URI + "openapi.yaml#/" + pointer("paths", path, method, "requestBody", "content", media, "schema")
                for name, value, example in example_values(content):
                    what = f"{method.upper()} {path} request {name}"
                    if example.get("x-schema-valid", True):
                        validate(registry, ref, value, what)
                    elif validator(registry, ref).is_valid(value):
                        fail(f"{what}: is marked x-schema-valid: false but is valid")
                    else:
                        ok()
            for status, response in operation.get("responses", {}).items():
                response_base = pointer("paths", path, method, "responses", status)
                if "$ref" in response:
                    response_base = response["$ref"][2:]
                response = resolve(spec, response)
                for media, content in response.get("content", {}).items():
                    ref = BASE_URI + "openapi.yaml#/" + response_base + "/" + pointer("content", media, "schema")
                    for name, value, _ in example_values(content):
                        validate(registry, ref, value, f"{method.upper()} {path} {status} {name}")
    for name, header in spec["components"]["headers"].items():
        if "example" in header:
            validate(registry, BASE_URI + "openapi.yaml#/" + pointer("components", "headers", name, "schema"),
                     header["example"], f"header {name} example")


class Client:
    def __init__(self, base: str, key: str | None) -> None:
        self.base = base.rstrip("/")
        self.key = key

    def send(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
             key: str | None | bool = True) -> tuple[int, dict, bytes]:
        request = urllib.request.Request(self.base + path, data=body, method=method)
        if body is not None:
            request.add_header("Content-Type", "application/json")
        chosen = self.key if key is True else key
        if chosen:
            request.add_header("Authorization", f"Bearer {chosen}")
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, {k.lower(): v for k, v in response.headers.items()}, response.read()
        except urllib.error.HTTPError as error:
            return error.code, {k.lower(): v for k, v in error.headers.items()}, error.read()


def check_answer(spec: dict, registry: Registry, path: str, method: str, status: int, headers: dict,
                 body: bytes, what: str) -> object:
    """Validates an answer against what openapi.yaml documents for its status; returns the body."""
    operation = spec["paths"][path][method]
    response = operation["responses"].get(str(status))
    if response is None:
        fail(f"{what}: status {status} is not documented for {method.upper()} {path}: {body[:300]!r}")
        return None
    base = response["$ref"][2:] if "$ref" in response else pointer("paths", path, method, "responses", str(status))
    response = resolve(spec, response)
    for name, header in response.get("headers", {}).items():
        header = resolve(spec, header)
        if header.get("required") and name.lower() not in headers:
            fail(f"{what}: documented header {name} is missing")
    media = headers.get("content-type", "").split(";")[0].strip()
    content = response.get("content", {})
    if not content and not body:
        ok()
        return None
    if media not in content:
        fail(f"{what}: content type {media!r} is not documented for {status} (documented: {list(content)})")
        return None
    if not media.endswith("json"):
        ok()
        return body
    value = json.loads(body, parse_float=Decimal)
    ref = BASE_URI + "openapi.yaml#/" + base + "/" + pointer("content", media, "schema")
    validate(registry, ref, json.loads(body), f"{what}: {status} body")
    return value


def natural_key(event: object) -> tuple[str, str] | None:
    if not isinstance(event, dict):
        return None
    if event.get("event") == "sale" and event.get("invoiceId") is not None:
        return ("sale", event["invoiceId"])
    if event.get("event") == "lead" and event.get("leadId") is not None:
        return ("lead", event["leadId"])
    return None


def check_live(spec: dict, schemas: dict[str, dict], registry: Registry, client: Client, ingest_key: str) -> dict[str, str]:
    """Sends the examples and checks the documented behaviours; answers the captured ids."""
    seen_keys: set[tuple[str, str]] = set()
    seen_clicks: set[str] = set()
    event_ids: list[str] = []
    captured: dict[str, str] = {}

    def expect(status: int, wanted: int | set[int], what: str) -> bool:
        wanted = {wanted} if isinstance(wanted, int) else wanted
        if status not in wanted:
            fail(f"{what}: answered {status}, documented {sorted(wanted)}")
            return False
        ok()
        return True

    print("openapi.yaml request examples sent to the server")
    for path, item in spec["paths"].items():
        for method, operation in operations(item):
            content = operation.get("requestBody", {}).get("content", {}).get("application/json")
            if content is None:
                continue
            for name, value, example in example_values(content):
                what = f"{method.upper()} {path} example {name}"
                wanted = example.get("x-expected-status")
                if wanted is None:
                    fail(f"{what}: has no x-expected-status")
                    continue
                target = path
                for param, source in (example.get("x-path-params") or {}).items():
                    if source not in captured:
                        fail(f"{what}: x-path-params names {source!r}, which no earlier example captured")
                    target = target.replace("{" + param + "}", captured.get(source, "missing"))
                for param, literal in (example.get("x-path-values") or {}).items():
                    target = target.replace("{" + param + "}", urllib.request.quote(str(literal), safe=""))
                if "{" in target:
                    fail(f"{what}: {target} has a path parameter without x-path-params")
                    continue
                raw = json.dumps(value).encode()
                status, headers, body = client.send(method.upper(), target, raw)
                expect(status, wanted, what)
                answer = check_answer(spec, registry, path, method, status, headers, body, what)
                if example.get("x-capture"):
                    if isinstance(answer, dict) and isinstance(answer.get("id"), str):
                        captured[example["x-capture"]] = answer["id"]
                    else:
                        fail(f"{what}: x-capture, but the answer has no id")
                if path.startswith("/v1/clicks"):
                    clicks = value.get("clicks", [value]) if isinstance(value, dict) else []
                    seen_clicks.update(c["clickId"] for c in clicks if isinstance(c, dict) and c.get("clickId"))
                events = value.get("events", [value]) if isinstance(value, dict) and path.startswith("/v1/events") else []
                for event in events:
                    key = natural_key(event)
                    if key:
                        seen_keys.add(key)
                if isinstance(answer, dict) and "id" in answer and path.startswith("/v1/events"):
                    event_ids.append(answer["id"])

    print("schemas/ examples sent to the server")
    for name in ("lead.json", "sale.json", "event.json"):
        for index, event in enumerate(schemas[name].get("examples", [])):
            what = f"schemas/{name} examples[{index}]"
            key = natural_key(event)
            wanted = 200 if key in seen_keys else 202
            status, headers, body = client.send("POST", "/v1/events", json.dumps(event).encode())
            expect(status, wanted, what)
            answer = check_answer(spec, registry, "/v1/events", "post", status, headers, body, what)
            if isinstance(answer, dict) and answer.get("duplicate") is not (wanted == 200):
                fail(f"{what}: duplicate is {answer.get('duplicate')}")
            if key:
                seen_keys.add(key)
    for index, batch in enumerate(schemas["batch.json"].get("examples", [])):
        what = f"schemas/batch.json examples[{index}]"
        status, headers, body = client.send("POST", "/v1/events/batch", json.dumps(batch).encode())
        expect(status, 200, what)
        answer = check_answer(spec, registry, "/v1/events/batch", "post", status, headers, body, what)
        if isinstance(answer, dict):
            for result, event in zip(answer["results"], batch["events"]):
                key = natural_key(event)
                duplicate = key in seen_keys
                if result.get("status") != "accepted" or result.get("duplicate") is not duplicate:
                    fail(f"{what}: item {result.get('index')} answered {result}, documented accepted, duplicate={duplicate}")
                if key:
                    seen_keys.add(key)
    for index, click in enumerate(schemas["click.json"].get("examples", [])):
        what = f"schemas/click.json examples[{index}]"
        click_id = click.get("clickId")
        wanted = 200 if click_id in seen_clicks else 201
        status, headers, body = client.send("POST", "/v1/clicks", json.dumps(click).encode())
        expect(status, wanted, what)
        answer = check_answer(spec, registry, "/v1/clicks", "post", status, headers, body, what)
        if isinstance(answer, dict) and click_id and answer.get("clickId") != click_id:
            fail(f"{what}: answered clickId {answer.get('clickId')!r}")
        if click_id:
            seen_clicks.add(click_id)

    print("reading back")
    for event_id in event_ids[:3]:
        status, headers, body = client.send("GET", f"/v1/events/{event_id}")
        expect(status, 200, f"GET /v1/events/{event_id}")
        check_answer(spec, registry, "/v1/events/{id}", "get", status, headers, body, f"GET /v1/events/{event_id}")
    for click_id in sorted(seen_clicks)[:3]:
        status, headers, body = client.send("GET", f"/v1/clicks/{click_id}")
        expect(status, 200, f"GET /v1/clicks/{click_id}")
        check_answer(spec, registry, "/v1/clicks/{clickId}", "get", status, headers, body, f"GET /v1/clicks/{click_id}")
    listing = spec["paths"]["/v1/events"]["get"]
    for parameter in listing["parameters"]:
        for name, value, _ in example_values(parameter):
            query = f"/v1/events?{parameter['name']}={urllib.request.quote(str(value))}"
            status, headers, body = client.send("GET", query)
            expect(status, 200, f"GET {query}")
            check_answer(spec, registry, "/v1/events", "get", status, headers, body, f"GET {query}")
    # Pagination: pages of 2 until nextCursor is null, every event seen once, newest first.
    seen: list[str] = []
    cursor = None
    for _ in range(100):
        query = "/v1/events?limit=2" + (f"&cursor={cursor}" if cursor else "")
        status, headers, body = client.send("GET", query)
        page = check_answer(spec, registry, "/v1/events", "get", status, headers, body, f"GET {query}")
        if not isinstance(page, dict):
            break
        seen.extend(event["id"] for event in page["data"])
        cursor = page["nextCursor"]
        if cursor is None:
            break
    if len(seen) != len(set(seen)) or seen != sorted(seen, reverse=True):
        fail(f"pagination: ids repeat or are not newest first: {seen}")
    else:
        ok()

    print("documented problem answers")
    sale = json.dumps(schemas["sale.json"]["examples"][0]).encode()
    cases = [
        ("no key", "POST", "/v1/events", sale, {}, None, 401),
        ("unknown key", "POST", "/v1/events", sale, {}, "cr_unknownprefix_secret", 401),
        ("key without the read scope", "GET", "/v1/events", None, {}, ingest_key, 403),
        ("unknown event id", "GET", "/v1/events/evt_00000000000000000000000000000000", None, {}, True, 404),
        ("not JSON", "POST", "/v1/events", b"{not json", {}, True, 400),
        ("not an object", "POST", "/v1/events", b"[1]", {}, True, 400),
        ("malformed Idempotency-Key", "POST", "/v1/events", sale, {"Idempotency-Key": "caf\u00e9".encode().decode("latin-1")}, True, 400),
        ("not application/json", "POST", "/v1/events", sale, {"Content-Type": "text/plain"}, True, 415),
        ("too large", "POST", "/v1/events", b" " * (1024 * 1024 + 1), {}, True, 413),
        ("invalid body", "POST", "/v1/events", b'{"event":"sale","amount":-1}', {}, True, 422),
        ("empty batch", "POST", "/v1/events/batch", b'{"events":[]}', {}, True, 422),
        ("bad query", "GET", "/v1/events?limit=0&colour=red", None, {}, True, 422),
        ("unknown schema", "GET", "/schemas/nope.json", None, {}, False, 404),
    ]
    for what, method, path, body, headers, key, wanted in cases:
        status, answer_headers, answer = client.send(method, path, body, headers, key=key)
        route = path.split("?")[0]
        route = "/v1/events/{id}" if route.startswith("/v1/events/evt_") else route
        route = "/schemas/{file}" if route.startswith("/schemas/") else route
        if expect(status, wanted, what):
            check_answer(spec, registry, route, method.lower(), status, answer_headers, answer, what)
    status, headers, _ = client.send("DELETE", "/openapi.yaml", key=False)
    if expect(status, 405, "DELETE /openapi.yaml") and headers.get("allow") != "GET, HEAD":
        fail(f"DELETE /openapi.yaml: Allow is {headers.get('allow')!r}, documented GET, HEAD")

    print("Idempotency-Key")
    key = f"contract-{uuid.uuid4()}"
    body = json.dumps({"event": "lead", "leadId": f"lead_{uuid.uuid4().hex}", "email": "idem@example.com"}).encode()
    first = client.send("POST", "/v1/events", body, {"Idempotency-Key": key})
    again = client.send("POST", "/v1/events", body, {"Idempotency-Key": key})
    expect(first[0], 202, "first request with a key")
    if again[0] != first[0] or again[2] != first[2] or again[1].get("idempotent-replayed") != "true":
        fail(f"replay: answered {again[0]} {again[2][:200]!r} replayed={again[1].get('idempotent-replayed')!r}, "
             f"documented the kept {first[0]} byte for byte with Idempotent-Replayed: true")
    else:
        ok()
    other = client.send("POST", "/v1/events", body.replace(b"idem@", b"other@"), {"Idempotency-Key": key})
    if expect(other[0], 422, "same key, other body"):
        answer = check_answer(spec, registry, "/v1/events", "post", *other, "same key, other body")
        if isinstance(answer, dict) and not answer["type"].endswith("/idempotency-key-reused"):
            fail(f"same key, other body: type {answer['type']}")
    # A rejected request keeps no answer: the key stays free for the corrected request.
    key = f"contract-{uuid.uuid4()}"
    expect(client.send("POST", "/v1/events", b'{"event":"lead"}', {"Idempotency-Key": key})[0], 422,
           "rejected request with a key")
    expect(client.send("POST", "/v1/events", body.replace(b"lead_", b"lead_fixed_"), {"Idempotency-Key": key})[0],
           202, "corrected request with the same key")
    return captured


class Caller:
    """Sends one request, checks its status and its answer against openapi.yaml."""

    def __init__(self, spec: dict, registry: Registry, client: Client) -> None:
        self.spec, self.registry, self.client = spec, registry, client

    def __call__(self, method: str, path: str, route: str, body: object = None, wanted: int = 200,
                 key: str | None | bool = True, headers: dict | None = None) -> object:
        raw = body if body is None or isinstance(body, bytes) else json.dumps(body).encode()
        status, answer_headers, answer = self.client.send(method, path, raw, headers, key=key)
        what = f"{method} {path}"
        if status != wanted:
            fail(f"{what}: answered {status}, documented {wanted}: {answer[:300]!r}")
            return None
        ok()
        self.headers = answer_headers
        return check_answer(self.spec, self.registry, route, method.lower(), status, answer_headers, answer, what)


def check_pipeline(spec: dict, registry: Registry, client: Client, ingest_key: str, captured: dict[str, str]) -> None:
    """Destinations, dispatches, retractions, reports, /metrics and /ui, with the documented answers."""
    call = Caller(spec, registry, client)
    unknown = "00000000000000000000000000000000"

    print("destinations")
    google, meta, webhook = (captured.get(n) for n in ("googleAdsDestination", "metaDestination", "webhookDestination"))
    if not (google and meta and webhook):
        fail(f"the destination examples did not capture their ids: {captured}")
        return
    page = call("GET", "/v1/destinations?limit=2", "/v1/destinations")
    if isinstance(page, dict):
        if [d["id"] for d in page["data"]] != [webhook, meta] or page["nextCursor"] != meta:
            fail(f"GET /v1/destinations?limit=2: {[d['id'] for d in page['data']]} then {page['nextCursor']}, "
                 f"documented the newest two first, then the cursor {meta}")
        rest = call("GET", f"/v1/destinations?limit=2&cursor={meta}", "/v1/destinations")
        # The other platforms' examples are created before Google's: page 2 starts with it.
        if isinstance(rest, dict) and [d["id"] for d in rest["data"]][:1] != [google]:
            fail(f"GET /v1/destinations, page 2: {[d['id'] for d in rest['data']]}, documented [{google}, …]")
    one = call("GET", f"/v1/destinations/{google}", "/v1/destinations/{id}")
    if isinstance(one, dict):
        config = one["config"]
        if ("credentials" in one or not one["hasCredentials"] or one["name"] != "Google Ads (EU account)"
                or config.get("customerId") != "1234567890" or config.get("loginCustomerId") != "1112223333"
                or config.get("eventSource") != "WEB"):
            fail(f"GET /v1/destinations/{google}: {one}, documented the patched destination, defaults filled in, "
                 "dashes dropped, no credentials")
        else:
            ok()
    call("GET", f"/v1/destinations/dst_{unknown}", "/v1/destinations/{id}", wanted=404)
    call("GET", "/v1/destinations/evt_" + unknown, "/v1/destinations/{id}", wanted=404)
    call("GET", f"/v1/destinations/{google}", "/v1/destinations/{id}", wanted=403, key=ingest_key)
    call("GET", "/v1/destinations?limit=0", "/v1/destinations", wanted=422)
    call("PATCH", f"/v1/destinations/dst_{unknown}", "/v1/destinations/{id}", body={"enabled": True}, wanted=404)
    call("DELETE", f"/v1/destinations/dst_{unknown}", "/v1/destinations/{id}", wanted=404)

    print("conversion events")
    route = "/v1/conversion-events/{eventName}"
    definition = {"kind": "lead", "tier": "micro", "value": {"amount": 25, "currency": "EUR"},
                  "destinations": {google: {"enabled": True, "conversionAction": "6543210009"},
                                   meta: {"enabled": False}}}
    stored = call("PUT", "/v1/conversion-events/Webinar%20attended", route, body=definition, wanted=201)
    if isinstance(stored, dict) and (stored.get("eventName") != "Webinar attended"
                                     or stored.get("destinations", {}).get(google, {}).get("conversionAction") != "6543210009"):
        fail(f"PUT /v1/conversion-events/Webinar%20attended: {stored}, documented the definition as sent")
    call("PUT", "/v1/conversion-events/Webinar%20attended", route, body=definition, wanted=200)
    wrong = {"kind": "lead", "tier": "micro", "destinations": {meta: {"enabled": True, "conversionAction": "1"},
                                                             google: {"enabled": True, "eventName": "Lead"}}}
    problem = call("PUT", "/v1/conversion-events/Webinar%20attended", route, body=wrong, wanted=422)
    if isinstance(problem, dict) and len(problem.get("errors", [])) != 2:
        fail(f"PUT with two bad mappings: {problem}, documented both listed")
    call("GET", "/v1/conversion-events/Webinar%20attended", route)
    call("GET", "/v1/conversion-events/Webinar%20attended", route, key=ingest_key, wanted=403)
    call("GET", "/v1/conversion-events/nothing-here", route, wanted=404)
    call("GET", "/v1/conversion-events?limit=1", "/v1/conversion-events")
    call("GET", "/v1/conversion-events?limit=0&cursor=!", "/v1/conversion-events", wanted=422)
    call("DELETE", "/v1/conversion-events/Webinar%20attended", route, wanted=204)
    call("DELETE", "/v1/conversion-events/Webinar%20attended", route, wanted=404)

    print("dispatches")
    tag = uuid.uuid4().hex[:12]
    sale = {"event": "sale", "invoiceId": f"inv_contract_{tag}", "customerExternalId": f"user_{tag}",
            "gclid": f"EAIa{tag}", "fbclid": f"IwAR{tag}", "amount": 49.95, "currency": "EUR", "mode": "wait"}
    before = call("GET", "/v1/reports/conversions?from=2000-01-01T00:00:00Z&to=9999-01-01T00:00:00Z",
                  "/v1/reports/conversions")
    answer = call("POST", "/v1/events", "/v1/events", body=sale, wanted=202)
    if not isinstance(answer, dict):
        return
    event_id = answer["id"]
    routed = {d["type"]: d for d in answer.get("dispatches", [])}
    if (answer.get("attribution") or {}).get("status") != "matched" or set(routed) != {"google_ads", "meta", "webhook"}:
        fail(f"mode wait: {answer}, documented matched (direct) and dispatched to the Google, Meta and webhook destinations")
        return
    ok()
    deadline = time.monotonic() + 30
    while True:
        listing = call("GET", f"/v1/dispatches?eventId={event_id}", "/v1/dispatches")
        if not isinstance(listing, dict):
            return
        by_type = {d["type"]: d for d in listing["data"]}
        if by_type["google_ads"]["status"] == "failed" and by_type["meta"]["status"] == "failed":
            break
        if time.monotonic() > deadline:
            fail(f"the dispatches of {event_id} did not fail against a closed port: {listing}")
            return
        time.sleep(0.2)
    if by_type["webhook"]["status"] != "queued" or by_type["webhook"]["nextAttemptAt"] is None:
        fail(f"the disabled webhook's dispatch: {by_type['webhook']}, documented queued (waiting)")
    google_dsp, meta_dsp, webhook_dsp = (by_type[t]["id"] for t in ("google_ads", "meta", "webhook"))
    detail = call("GET", f"/v1/dispatches/{google_dsp}", "/v1/dispatches/{id}")
    if isinstance(detail, dict):
        if (detail["attemptCount"] != len(detail["attempts"]) or not detail["attempts"]
                or detail["reason"] != "attempts_exhausted" or not detail["lastError"]
                or [a["attempt"] for a in detail["attempts"]] != list(range(1, len(detail["attempts"]) + 1))):
            fail(f"GET /v1/dispatches/{google_dsp}: {detail}, documented a failed dispatch with every attempt")
        else:
            ok()
    call("GET", f"/v1/dispatches/dsp_{unknown}", "/v1/dispatches/{id}", wanted=404)
    call("GET", f"/v1/dispatches/{google_dsp}", "/v1/dispatches/{id}", wanted=403, key=ingest_key)
    retried = call("POST", f"/v1/dispatches/{google_dsp}/retry", "/v1/dispatches/{id}/retry")
    if isinstance(retried, dict) and (retried["status"] != "queued" or retried["reason"] is not None):
        fail(f"retry: {retried}, documented queued again")
    conflict = call("POST", f"/v1/dispatches/{webhook_dsp}/retry", "/v1/dispatches/{id}/retry", wanted=409)
    if isinstance(conflict, dict) and not conflict["type"].endswith("/conflict"):
        fail(f"retrying a queued dispatch: {conflict}")
    call("POST", f"/v1/dispatches/{meta_dsp}/retry", "/v1/dispatches/{id}/retry", wanted=403, key=ingest_key)
    call("POST", f"/v1/dispatches/dsp_{unknown}/retry", "/v1/dispatches/{id}/retry", wanted=404)
    failed = call("GET", f"/v1/dispatches?status=failed&destination={meta}&limit=1", "/v1/dispatches")
    if isinstance(failed, dict) and any(d["status"] != "failed" or d["destination"] != meta for d in failed["data"]):
        fail(f"GET /v1/dispatches?status=failed&destination=…: {failed}")
    bad = call("GET", "/v1/dispatches?status=lost&limit=0&colour=red", "/v1/dispatches", wanted=422)
    if isinstance(bad, dict) and [e["field"] for e in bad["errors"]] != ["status", "limit", "colour"]:
        fail(f"GET /v1/dispatches with three bad parameters: {bad['errors']}, documented all three listed")
    call("GET", "/v1/dispatches", "/v1/dispatches", wanted=403, key=ingest_key)
    bulk = call("POST", "/v1/dispatches/retry", "/v1/dispatches/retry", body={"status": "failed", "destination": meta})
    if isinstance(bulk, dict) and bulk["queued"] < 1:
        fail(f"bulk retry of the failed Meta dispatches: {bulk}, documented at least the one of {event_id}")
    call("POST", "/v1/dispatches/retry", "/v1/dispatches/retry", body=b"[]", wanted=400)
    call("POST", "/v1/dispatches/retry", "/v1/dispatches/retry", body={}, wanted=403, key=ingest_key)
    stats = call("GET", "/v1/dispatches/stats", "/v1/dispatches/stats")
    if isinstance(stats, dict):
        ids = {d["destination"] for d in stats["destinations"]}
        if not {google, meta, webhook} <= ids or sum(stats["totals"].values()) < 3:
            fail(f"GET /v1/dispatches/stats: {stats}, documented counts for the three destinations")

    print("retractions")
    retracted = call("POST", f"/v1/events/{event_id}/retract", "/v1/events/{id}/retract", body={"reason": "refund"})
    if isinstance(retracted, dict) and (retracted["reason"] != "refund" or retracted["cancelled"] < 1
                                        or retracted["retractions"]):
        fail(f"retract: {retracted}, documented the waiting dispatches cancelled and no retraction (nothing was delivered)")
    again = call("POST", f"/v1/events/{event_id}/retract", "/v1/events/{id}/retract", body={"reason": "other"},
                 key=ingest_key)
    if isinstance(again, dict) and isinstance(retracted, dict) and (
            again["reason"] != "refund" or again["cancelled"] != 0 or again["retractedAt"] != retracted["retractedAt"]):
        fail(f"retract again: {again}, documented the first retraction, nothing more cancelled")
    event = call("GET", f"/v1/events/{event_id}", "/v1/events/{id}")
    if isinstance(event, dict):
        webhook_now = [d for d in event["dispatches"] if d["id"] == webhook_dsp]
        if (event.get("retractReason") != "refund" or "retractedAt" not in event or not webhook_now
                or webhook_now[0]["status"] != "cancelled" or webhook_now[0]["reason"] != "event retracted: refund"):
            fail(f"GET /v1/events/{event_id} after the retraction: {event}")
    call("POST", f"/v1/events/evt_{unknown}/retract", "/v1/events/{id}/retract", body={}, wanted=404)
    call("POST", f"/v1/events/{event_id}/retract", "/v1/events/{id}/retract", wanted=415)
    call("POST", f"/v1/events/{event_id}/retract", "/v1/events/{id}/retract", body={"reason": 7}, wanted=422)

    print("deleting a destination")
    call("DELETE", f"/v1/destinations/{webhook}", "/v1/destinations/{id}", wanted=204)
    call("GET", f"/v1/destinations/{webhook}", "/v1/destinations/{id}", wanted=404)
    call("DELETE", f"/v1/destinations/{webhook}", "/v1/destinations/{id}", wanted=404)
    gone = call("POST", f"/v1/dispatches/{webhook_dsp}/retry", "/v1/dispatches/{id}/retry", wanted=409)
    if isinstance(gone, dict) and "deleted" not in gone["detail"] and "cancelled" not in gone["detail"]:
        fail(f"retrying a dispatch of a deleted destination: {gone}")

    print("reports")
    after = call("GET", "/v1/reports/conversions?from=2000-01-01T00:00:00Z&to=9999-01-01T00:00:00Z",
                 "/v1/reports/conversions")
    if isinstance(before, dict) and isinstance(after, dict):
        sales = [sum(r["sales"] for r in report["data"]) for report in (before, after)]
        if sales[0] != sales[1]:
            fail(f"reports: {sales[0]} sales before a sale that was then retracted, {sales[1]} after; "
                 "documented that retracted events do not count")
        else:
            ok()
    call("GET", "/v1/reports/conversions?from=2026-01-01T02:00:00%2B02:00&to=2027-01-01T00:00:00Z&groupBy=campaign"
                "&model=first_click", "/v1/reports/conversions")
    series = call("GET", "/v1/reports/conversions?from=2026-11-01&to=2027-01-01&model=linear&interval=month&tier=macro",
                  "/v1/reports/conversions")
    if isinstance(series, dict):
        periods = sorted({r["period"] for r in series["data"]})
        if series["data"] and periods != ["2026-11-01T00:00:00.000Z", "2026-12-01T00:00:00.000Z"]:
            fail(f"a monthly series: periods {periods}, documented every month of the range")
    csv = call("GET", "/v1/reports/conversions?from=2026-01-01&to=2027-01-01&groupBy=source", "/v1/reports/conversions",
               headers={"Accept": "text/csv"})
    if isinstance(csv, (bytes, str)):
        text = csv.decode() if isinstance(csv, bytes) else csv
        if not text.startswith("key,clicks,leads,sales,"):
            fail(f"a report as CSV: {text[:120]!r}")
    bad = call("GET", "/v1/reports/conversions?from=2026-04-01T10:00:00Z&to=2026-05-01&model=u_shaped&interval=year",
               "/v1/reports/conversions", wanted=422)
    if isinstance(bad, dict) and [e["field"] for e in bad["errors"]] != ["from", "model", "interval"]:
        fail(f"a time of day, an unknown model and interval: {bad['errors']}")
    credit = call("GET", f"/v1/events/{event_id}/credit", "/v1/events/{id}/credit")
    if isinstance(credit, dict):
        for model in ("last_click", "first_click", "linear", "position_based", "time_decay"):
            if sum(t["shares"][model] for t in credit["touches"]) != 1:
                fail(f"the credit of {event_id}: {credit}, documented shares summing to 1 per model")
                break
    call("GET", f"/v1/events/evt_{unknown}/credit", "/v1/events/{id}/credit", wanted=404)
    health = call("GET", "/v1/dispatches/health?interval=hour", "/v1/dispatches/health")
    if isinstance(health, dict) and not any(r["succeeded"] + r["failed"] + r["queued"] + r["retrying"] + r["skipped"]
                                            for r in health["data"]):
        fail(f"delivery health of the last 24 hours: {health}, documented today's dispatches")
    call("GET", "/v1/dispatches/health?interval=week&from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z",
         "/v1/dispatches/health", wanted=422)
    bad = call("GET", "/v1/reports/conversions?from=2026-12-01T00:00:00Z&to=2026-11-01T00:00:00Z&groupBy=country",
               "/v1/reports/conversions", wanted=422)
    if isinstance(bad, dict) and [e["field"] for e in bad["errors"]] != ["to", "groupBy"]:
        fail(f"a reversed range and an unknown groupBy: {bad['errors']}")
    call("GET", "/v1/reports/conversions", "/v1/reports/conversions", wanted=422)
    call("GET", "/v1/reports/conversions?from=2026-01-01T00:00:00Z&to=2027-01-01T00:00:00Z",
         "/v1/reports/conversions", wanted=403, key=ingest_key)

    print("/metrics and /ui")
    text = call("GET", "/metrics", "/metrics", key=False)
    if isinstance(text, bytes):
        for needle in (b"convrelay_events_total", b"convrelay_dispatches_total", b"convrelay_http_request_duration_seconds",
                       b"convrelay_dispatch_queue_depth", b"convrelay_db_pool_connections"):
            if needle not in text:
                fail(f"/metrics lacks {needle.decode()}")
    page = call("GET", "/ui", "/ui", key=False)
    if isinstance(page, bytes) and b"<title>Conversion log" not in page:
        fail("/ui: not the conversion log page")


def check_without_secret_key(spec: dict, registry: Registry, client: Client, token: str,
                             captured: dict[str, str]) -> None:
    """A server without CONVRELAY_SECRET_KEY and with CONVRELAY_METRICS_TOKEN."""
    call = Caller(spec, registry, client)
    print("a server without CONVRELAY_SECRET_KEY, with CONVRELAY_METRICS_TOKEN")
    body = spec["paths"]["/v1/destinations"]["post"]["requestBody"]["content"]["application/json"]["examples"]["meta"]
    for method, path, route, payload in (
            ("POST", "/v1/destinations", "/v1/destinations", body["value"]),
            ("PATCH", f"/v1/destinations/{captured.get('googleAdsDestination')}", "/v1/destinations/{id}", {"enabled": True})):
        problem = call(method, path, route, body=payload, wanted=503)
        if isinstance(problem, dict):
            if not problem["type"].endswith("/secret-key-missing") or "retry-after" in call.headers:
                fail(f"{method} {path} without a secret key: {problem}, documented secret-key-missing without Retry-After")
    call("GET", "/v1/destinations", "/v1/destinations")
    problem = call("GET", "/metrics", "/metrics", wanted=401, key=False)
    if isinstance(problem, dict) and not problem["type"].endswith("/unauthorized"):
        fail(f"/metrics without its token: {problem}")
    call("GET", "/metrics", "/metrics", wanted=401, key="not-the-token")
    call("GET", "/metrics", "/metrics", key=token)
    call("GET", "/metrics", "/metrics", key=False, headers={"Authorization": f"bearer {token}"})


def main() -> int:
    root, base, key, ingest_key = Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    spec, schemas, registry = load_documents(root)
    check_static(spec, schemas, registry)
    captured = check_live(spec, schemas, registry, Client(base, key), ingest_key)
    check_pipeline(spec, registry, Client(base, key), ingest_key, captured)
    if len(sys.argv) > 6:
        check_without_secret_key(spec, registry, Client(sys.argv[5], key), sys.argv[6], captured)
    print(f"examples: {checked} passed, {len(failures)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
