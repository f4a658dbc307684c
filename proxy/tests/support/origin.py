#!/usr/bin/env python3
"""A static GOPROXY origin for modfleet-proxy's end-to-end tests.

Serves a directory laid out like a GOPROXY (module/@v/list, .info, .mod, .zip, @latest) over
HTTP/1.1 from a separate process, as a real upstream would. It prints its address as the first
line of stdout ("listening on http://127.0.0.1:PORT") and keeps per-path request counts at
GET /_origin/requests (JSON), so tests can assert how often the proxy came upstream.

--rate BYTES_PER_SECOND throttles bodies (to kill a proxy in the middle of a download).
--fault-file PATH is read before every answer: JSON {"delay_ms": N, "jitter_ms": M} delays
the answer by N ± M milliseconds (a slow upstream; see proxy/tests/chaos.rs for why the delay is
injected here rather than by tc netem). A missing file means no fault.
"""

import argparse
import json
import os
import posixpath
import random
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

COUNTS = {}
LOCK = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    root = "."
    rate = 0
    fault_file = None

    def _inject_fault(self):
        if not self.fault_file:
            return
        try:
            with open(self.fault_file) as f:
                fault = json.load(f)
        except (OSError, ValueError):
            return
        delay = fault.get("delay_ms", 0) + random.uniform(-1, 1) * fault.get("jitter_ms", 0)
        if delay > 0:
            time.sleep(delay / 1000.0)

    def log_message(self, fmt, *args):  # keep test output quiet
        pass

    def handle(self):
        # Clients (and proxies killed by the tests) hang up mid-answer; that is not an error.
        try:
            super().handle()
        except (ConnectionResetError, BrokenPipeError):
            pass

    def _send(self, status, body, ctype="text/plain; charset=utf-8"):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        path = urllib.parse.urlsplit(self.path).path
        if path == "/_origin/requests":
            with LOCK:
                body = json.dumps(COUNTS).encode()
            return self._send(200, body, "application/json")
        with LOCK:
            COUNTS[path] = COUNTS.get(path, 0) + 1
        self._inject_fault()
        rel = posixpath.normpath(urllib.parse.unquote(path)).lstrip("/")
        if rel.startswith("..") or "\0" in rel:
            return self._send(400, b"bad path\n")
        full = os.path.join(self.root, rel)
        if not os.path.isfile(full):
            return self._send(404, ("not found: %s\n" % rel).encode())
        size = os.path.getsize(full)
        ctype = "application/zip" if full.endswith(".zip") else "text/plain; charset=utf-8"
        if full.endswith(".info") or full.endswith("@latest"):
            ctype = "application/json"
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(size))
        self.end_headers()
        if self.command == "HEAD":
            return
        with open(full, "rb") as f:
            chunk = 16384
            while True:
                data = f.read(chunk)
                if not data:
                    break
                try:
                    self.wfile.write(data)
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    return
                if self.rate:
                    time.sleep(len(data) / self.rate)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--dir", required=True, help="GOPROXY-layout directory to serve")
    ap.add_argument("--host", default="127.0.0.1", help="address to listen on")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--rate", type=int, default=0, help="throttle bodies to this many bytes/s")
    ap.add_argument("--fault-file", help="JSON fault settings read before every answer")
    args = ap.parse_args()
    Handler.root = os.path.abspath(args.dir)
    Handler.rate = args.rate
    Handler.fault_file = args.fault_file
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    server.daemon_threads = True
    print("listening on http://%s:%d" % (args.host, server.server_address[1]), flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
