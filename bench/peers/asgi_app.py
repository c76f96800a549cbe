# The hello handler as a plain ASGI app (no framework), for uvicorn and granian in bench-shim:
# the body parsed as JSON, the handler called with the event and a context like the shim's,
# its {statusCode, headers, body} sent as JSON.
#   PEER_HANDLER=examples/hello-python/handler.py uvicorn --app-dir bench/peers asgi_app:app
import importlib.util
import json
import os
from urllib.parse import parse_qsl

spec = importlib.util.spec_from_file_location("handler", os.environ["PEER_HANDLER"])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
handler = module.handler


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
    context = {
        "method": scope["method"],
        "path": scope["path"],
        "query": dict(parse_qsl(scope["query_string"].decode("latin-1"))),
        "headers": headers,
        "trigger": "http",
        "requestId": headers.get("x-request-id", "-"),
    }
    r = handler(json.loads(body) if body else None, context)
    payload = json.dumps(r.get("body")).encode()
    await send({
        "type": "http.response.start",
        "status": r.get("statusCode", 200),
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())],
    })
    await send({"type": "http.response.body", "body": payload})
