"""The Functions page's --image example for an event trigger, in Flask: a server that
knows only POST /event (no /health). kipper-poll POSTs each row / item here.
EVENT_LOG (optional) appends every event as one JSON line, so tests can see them."""
import json
import os

from flask import Flask, request

app = Flask(__name__)


def process(event):
    print("Processing:", event, flush=True)
    path = os.environ.get("EVENT_LOG")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(event) + "\n")


@app.post('/event')
def handle_event():
    process(request.json)
    return {'ok': True}


if __name__ == "__main__":
    app.run(host="0.0.0.0", port=int(os.environ.get("PORT", "8080")))
