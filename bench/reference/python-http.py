# Reference for bench-shim: the hello handler served by python's standard
# http.server, as the upstream python runtime does, but threaded and with
# HTTP/1.1 keep-alive and TCP_NODELAY (upstream had neither, so this is kinder).
#   python3 python-http.py HANDLER PORT
import importlib.util
import json
import socket
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

spec = importlib.util.spec_from_file_location("handler", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
fn = module.handler


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self):
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_POST(self):
        length = int(self.headers.get("content-length") or 0)
        text = self.rfile.read(length)
        event = json.loads(text) if text else None
        url = urlsplit(self.path)
        context = {
            "method": "POST",
            "path": url.path,
            "query": dict(parse_qsl(url.query)),
            "headers": dict(self.headers),
            "trigger": "http",
            "requestId": self.headers.get("x-request-id") or "-",
        }
        r = fn(event, context)
        body = json.dumps(r.get("body")).encode()
        self.send_response(r.get("statusCode", 200))
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


ThreadingHTTPServer.daemon_threads = True
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[2])), Handler).serve_forever()
