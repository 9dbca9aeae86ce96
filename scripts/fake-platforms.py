#!/usr/bin/env python3
"""A tiny stand-in for the ad platforms and a webhook receiver, for scripts/examples.sh and
scripts/ui-test.sh (standard library only).

    python3 scripts/fake-platforms.py PORT_FILE [--webhook-status 200]

Listens on 127.0.0.1 on a free port and writes that port to PORT_FILE once it accepts
connections. Point the server at it with

    CONVRELAY_GOOGLE_OAUTH_URL=http://127.0.0.1:PORT/token
    CONVRELAY_GOOGLE_DATA_MANAGER_URL=http://127.0.0.1:PORT
    CONVRELAY_GOOGLE_ADS_URL=http://127.0.0.1:PORT
    CONVRELAY_META_URL=http://127.0.0.1:PORT

and a webhook destination at http://127.0.0.1:PORT/hook.

Answers:
    POST /token                        an OAuth access token
    POST /v1/events:ingest             Data Manager: {"requestId": ...}
    POST /<version>/customers/<id>:*   Google Ads API: one empty result per row
    POST /<version>/<pixel>/events     Meta: {"events_received": n}
    POST /hook                         the webhook status (200 unless told otherwise)
    POST /_control/webhook-status/<n>  from now on the webhook answers n
    GET  /_control/received            every request so far: [{"method", "path"}]
"""

import argparse
import json
import os
import re
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

state = {"webhook_status": 200, "received": []}
lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *_args):  # quiet: the scripts print what matters
        pass

    def _answer(self, status, body, content_type="application/json"):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            return json.loads(raw) if raw else None
        except ValueError:
            return None

    def do_GET(self):
        if self.path == "/_control/received":
            with lock:
                return self._answer(200, state["received"])
        return self._answer(404, {"error": "not found"})

    def do_POST(self):
        path = self.path.split("?", 1)[0]
        body = self._body()
        control = re.fullmatch(r"/_control/webhook-status/(\d{3})", path)
        if control:
            with lock:
                state["webhook_status"] = int(control.group(1))
            return self._answer(200, {"webhookStatus": state["webhook_status"]})
        with lock:
            state["received"].append({"method": "POST", "path": path})
            webhook_status = state["webhook_status"]
        if path == "/token":
            return self._answer(
                200,
                {"access_token": "ya29.fake-access-token", "expires_in": 3599, "token_type": "Bearer"},
            )
        if path == "/v1/events:ingest":
            return self._answer(200, {"requestId": "fake-data-manager-request"})
        ads = re.fullmatch(r"/v\d+/customers/\d+:(\w+)", path)
        if ads:
            rows = []
            if isinstance(body, dict):
                rows = body.get("conversions") or body.get("conversionAdjustments") or []
            return self._answer(200, {"results": [{} for _ in rows]})
        if re.fullmatch(r"/v[\d.]+/\d+/events", path):
            count = len(body.get("data", [])) if isinstance(body, dict) else 0
            return self._answer(200, {"events_received": count, "fbtrace_id": "fake-trace"})
        if path == "/hook":
            # Markup in a failure, as a misbehaving receiver may send: pages must show it as text.
            text = b"ok" if webhook_status < 400 else b"<b>boom</b>: the receiver is down"
            return self._answer(webhook_status, text, "text/plain")
        return self._answer(404, {"error": "not found"})


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("port_file")
    parser.add_argument("--webhook-status", type=int, default=200)
    args = parser.parse_args()
    state["webhook_status"] = args.webhook_status
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(server.server_address[1]))
    os.replace(tmp, args.port_file)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
