# An event-triggered function in Python: kipper-poll POSTs each event to /event.
# A 2xx marks the event done; anything else makes kipper-poll retry it.
#   KIPPER_TRIGGER=redis cargo run --release -p kipper-shim -- examples/event-python/handler.py
#   curl -s localhost:8080/event -d '{"id":42}'


def handler(event, context):
    if not isinstance(event, dict) or "id" not in event:
        return {"statusCode": 422, "body": {"error": "event has no id"}}
    print("processing", context["trigger"], "event", event["id"])
    return {"statusCode": 200, "body": {"processed": event["id"]}}
