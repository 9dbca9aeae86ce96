#!/usr/bin/env python3
"""Microsoft Advertising REST bodies through msads' pydantic models (run by sdk_check.py in the
venv msads needs of its own: it installs a `bingads` package of its own).

Reads a JSON list of `ApplyOfflineConversionsRequest` bodies on stdin; prints one problem a line
and exits 1 when a body does not survive the round trip: the models refuse wrong types and
unparseable times but ignore unknown or mis-cased keys, so what comes back must equal what was
sent.
"""

import json
import sys

from openapi_client.models.campaign.apply_offline_conversion_adjustments_request import (
    ApplyOfflineConversionAdjustmentsRequest,
)
from openapi_client.models.campaign.apply_offline_conversions_request import (
    ApplyOfflineConversionsRequest,
)


def check(body: dict, where: str) -> list:
    # A body is one request or the other, by its list's key.
    if "OfflineConversionAdjustments" in body:
        request, key = ApplyOfflineConversionAdjustmentsRequest, "OfflineConversionAdjustments"
    else:
        request, key = ApplyOfflineConversionsRequest, "OfflineConversions"
    try:
        model = request.from_dict(body)
    except Exception as error:  # pydantic.ValidationError
        return [f"{where}: {request.__name__} refuses it: {error}".replace("\n", " ")]
    back = model.model_dump(by_alias=True, exclude_none=True, mode="json")
    problems = []
    for i, (sent, read) in enumerate(zip(body.get(key, []), back.get(key, []))):
        for name in sorted(set(sent) | set(read)):
            if sent.get(name) != read.get(name):
                problems.append(f"{where}.{key}[{i}].{name}: sent {sent.get(name)!r}, "
                                f"the model reads {read.get(name)!r}")
    if set(body) != set(back):
        problems.append(f"{where}: top-level keys {sorted(body)} read as {sorted(back)}")
    return problems


def main() -> int:
    problems = []
    for n, body in enumerate(json.load(sys.stdin)):
        problems += check(body, f"request {n}")
    for problem in problems:
        print(problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
