# The smallest Kipper HTTP function in Python: answers every request with a greeting.
#   cargo run --release -p kipper-shim -- examples/hello-python/handler.py
#   curl -s localhost:8080/ -d '{"name":"Ada"}' -H 'content-type: application/json'


def handler(event, context=None):
    name = (event or {}).get("name") if isinstance(event, dict) else None
    name = name or context["query"].get("name") or "world"
    return {
        "statusCode": 200,
        "headers": {"Content-Type": "application/json"},
        "body": {"hello": name, "method": context["method"], "path": context["path"], "requestId": context["requestId"]},
    }
