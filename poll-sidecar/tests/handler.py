#!/usr/bin/env python3
"""A real HTTP handler process for kipper-poll's black-box tests.

It answers POST /event and records every delivery as one JSON line in
--record: {"key", "attempt", "status", "start", "end", "body"}, so a test can
check what arrived, how often, and whether two deliveries of one event
overlapped in time. Its behaviour comes from the arguments:

  --fail-percent N   answer --fail-status for N% of events, chosen by a hash
                     of the Idempotency-Key, so the same events always fail
  --fail-status S    the failing status (default 500)
  --fail-first N     fail the first N attempts of every event (then succeed)
  --flaky-percent N  fail the first attempt of N% of events (by key hash)
  --slow-percent N   first attempts of N% of other events take --slow-ms
  --slow-ms MS       (default 1500): in flight while a server restarts
  --delay-ms MS      sleep before answering (a slow handler: timeouts)
  --status S         answer every request with S (e.g. 503: not ready)
  --retry-after S    add Retry-After: S to failing answers

It prints "listening <port>" once it accepts connections (port 0 picks one).
"""
import argparse
import hashlib
import json
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

args = None
lock = threading.Lock()
record = None


def bucket(key, salt):
    return int(hashlib.sha256((salt + key).encode()).hexdigest()[:8], 16) % 100


def failing(key, attempt):
    if args.fail_first and attempt <= args.fail_first:
        return True
    if args.flaky_percent and attempt == 1 and bucket(key, "flaky") < args.flaky_percent:
        return True
    if args.fail_percent:
        h = int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) % 100
        return h < args.fail_percent
    return False


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self):
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, *a):
        pass

    def do_GET(self):
        self.answer(200, b'{"ok":true}')

    def do_POST(self):
        start = time.time()
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        key = self.headers.get("Idempotency-Key", "")
        attempt = int(self.headers.get("Kipper-Attempt") or 0)
        if args.delay_ms:
            time.sleep(args.delay_ms / 1000.0)
        if args.slow_percent and attempt == 1 and bucket(key, "slow") < args.slow_percent:
            time.sleep(args.slow_ms / 1000.0)
        if args.status:
            status = args.status
        elif failing(key, attempt):
            status = args.fail_status
        else:
            status = 200
        end = time.time()
        line = {
            "key": key,
            "attempt": attempt,
            "status": status,
            "start": start,
            "end": end,
            "body": json.loads(body) if body else None,
            "raw": body.decode("utf-8", "replace"),
        }
        with lock:
            record.write(json.dumps(line) + "\n")
            record.flush()
        extra = {}
        if status >= 400 and args.retry_after is not None:
            extra["Retry-After"] = str(args.retry_after)
        self.answer(status, b'{"ok":true}' if status < 400 else b'{"error":"injected"}', extra)

    def answer(self, status, payload, extra=None):
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(payload)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def handle_error(self, request, client_address):
        # A sidecar killed mid-request resets its connections: expected here.
        pass


def main():
    global args, record
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--record", required=True)
    p.add_argument("--fail-percent", type=int, default=0)
    p.add_argument("--fail-status", type=int, default=500)
    p.add_argument("--fail-first", type=int, default=0)
    p.add_argument("--delay-ms", type=int, default=0)
    p.add_argument("--status", type=int, default=0)
    p.add_argument("--retry-after", type=int, default=None)
    p.add_argument("--flaky-percent", type=int, default=0)
    p.add_argument("--slow-percent", type=int, default=0)
    p.add_argument("--slow-ms", type=int, default=1500)
    args = p.parse_args()
    record = open(args.record, "a", buffering=1)
    server = Server(("127.0.0.1", args.port), Handler)
    print("listening", server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
