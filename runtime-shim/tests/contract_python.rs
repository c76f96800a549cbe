//! CONTRACT section 1 against real python workers: `handler`/`handle`/`main`,
//! 0, 1 or 2 parameters, `async def`, result mapping, throws, load failures.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

use harness::{Shim, request, write};
use serde_json::json;

const ECHO: &str = r#"
import os

def handler(event, context):
    return {"statusCode": 200, "body": {"event": event, "context": context, "trigger": os.environ.get("KIPPER_TRIGGER")}}
"#;

#[test]
fn event_and_context_follow_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let handler = write(dir.path(), "handler.py", ECHO);
    let shim = Shim::start(&handler, &[("KIPPER_TRIGGER", "redis")]);

    let r = request(
        shim.port,
        "PUT",
        "/items?a=1&b=two",
        &[
            ("content-type", "application/json; charset=utf-8"),
            ("x-test", "yes"),
        ],
        br#"{"x":[1,"y"]}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["event"], json!({"x": [1, "y"]}));
    let c = &v["context"];
    assert_eq!(c["method"], "PUT");
    assert_eq!(c["path"], "/items");
    assert_eq!(c["query"], json!({"a": "1", "b": "two"}));
    assert_eq!(c["headers"]["x-test"], "yes");
    assert_eq!(c["trigger"], "http");
    assert_eq!(c["requestId"], r.header("x-request-id").unwrap());
    assert!(c["deadline"].as_u64().unwrap() > 1_700_000_000_000);
    assert_eq!(v["trigger"], "redis");

    let r = request(
        shim.port,
        "POST",
        "/",
        &[("content-type", "text/plain")],
        "héllo".as_bytes(),
    );
    assert_eq!(r.json()["event"], "héllo");
    assert_eq!(shim.get("/").json()["event"], serde_json::Value::Null);
    let r = request(shim.port, "POST", "/event", &[], br#"{"id":1}"#);
    assert_eq!(r.json()["event"], json!({"id": 1}));
    assert_eq!(r.json()["context"]["trigger"], "redis");
    assert_eq!(
        request(shim.port, "POST", "/event", &[], b"[1,").status,
        400
    );
}

const MAPPING: &str = r#"
import asyncio

def handle(event, context=None):
    kind = event["kind"]
    if kind == "status":
        return {"statusCode": 201, "headers": {"X-A": "b"}, "body": "created"}
    if kind == "status-json":
        return {"statusCode": 409, "body": {"conflict": True}}
    if kind == "status-bytes":
        return {"statusCode": 200, "body": b"\x00\x01"}
    if kind == "string":
        return "plain"
    if kind == "none":
        return None
    if kind == "number":
        return 42
    if kind == "list":
        return [1, 2]
    if kind == "dict":
        return {"a": 1}
    if kind == "throw":
        raise ValueError("boom")
    if kind == "awaitable":
        async def later():
            await asyncio.sleep(0)
            return {"statusCode": 202}
        return later()
    if kind == "bad-status":
        return {"statusCode": 42}
    if kind == "unserializable":
        return {"statusCode": 200, "body": {"x": object()}}
"#;

#[test]
fn results_map_to_http_as_the_contract_says() {
    let dir = tempfile::tempdir().unwrap();
    let handler = write(dir.path(), "handler.py", MAPPING);
    let shim = Shim::start(&handler, &[]);
    let call = |kind: &str| shim.post_json("/", &json!({ "kind": kind }).to_string());

    let r = call("status");
    assert_eq!(
        (r.status, r.text().as_str(), r.header("x-a")),
        (201, "created", Some("b"))
    );
    let r = call("status-json");
    assert_eq!((r.status, r.json()), (409, json!({"conflict": true})));
    let r = call("status-bytes");
    assert_eq!(
        (r.body.as_slice(), r.header("content-type")),
        (&[0u8, 1][..], Some("application/octet-stream"))
    );
    assert_eq!(call("string").text(), "plain");
    assert_eq!(call("none").json(), json!({"ok": true}));
    assert_eq!(call("number").json(), json!(42));
    assert_eq!(call("list").json(), json!([1, 2]));
    assert_eq!(call("dict").json(), json!({"a": 1}));
    let r = call("throw");
    assert_eq!((r.status, r.json()), (500, json!({"error": "boom"})));
    assert_eq!(call("awaitable").status, 202);
    assert_eq!(call("bad-status").status, 500);
    assert_eq!(call("unserializable").status, 500);
    // The worker survives all of that.
    assert_eq!(call("string").status, 200);
    assert!(shim.logs().contains("ValueError: boom"), "{}", shim.logs());
}

#[test]
fn names_and_signatures_follow_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let variants = [
        (
            "two.py",
            "def handler(event, context):\n    return 'two:' + context['method']",
            "two:GET",
        ),
        (
            "one.py",
            "def handler(event):\n    return 'one:' + str(event)",
            "one:None",
        ),
        (
            "zero.py",
            "import os\ndef main():\n    return 'zero:' + os.environ['KIPPER_RUNTIME']",
            "zero:python",
        ),
        (
            "handle.py",
            "def handle(event, context=None):\n    return 'handle'",
            "handle",
        ),
        (
            "order.py",
            "def main():\n    return 'main'\ndef handler(event):\n    return 'handler-first'",
            "handler-first",
        ),
        (
            "varargs.py",
            "def handler(*args):\n    return 'args:%d' % len(args)",
            "args:2",
        ),
        (
            "asyncdef.py",
            "import asyncio\nasync def handler(event, context):\n    await asyncio.sleep(0.001)\n    return 'async'",
            "async",
        ),
        (
            "asyncmain.py",
            "async def main():\n    return 'async-main'",
            "async-main",
        ),
        (
            "method.py",
            "class H:\n    def run(self, event):\n        return 'method:' + str(event)\nhandler = H().run",
            "method:None",
        ),
        (
            "callable.py",
            "class H:\n    def __call__(self, event, context):\n        return 'callable:' + context['method']\nhandler = H()",
            "callable:GET",
        ),
        (
            "decorated.py",
            "import functools\ndef deco(f):\n    @functools.wraps(f)\n    def w(*a):\n        return f(*a)\n    return w\n@deco\ndef handler(event):\n    return 'wrapped:' + str(event)",
            "wrapped:None",
        ),
    ];
    for (file, code, expected) in variants {
        let handler = write(dir.path(), file, code);
        let shim = Shim::start(&handler, &[]);
        let r = shim.get("/");
        assert_eq!(
            (r.status, r.text()),
            (200, expected.to_string()),
            "{file}: {}",
            shim.logs()
        );
    }
}

#[test]
fn async_handlers_overlap() {
    let dir = tempfile::tempdir().unwrap();
    let handler = write(
        dir.path(),
        "handler.py",
        "import asyncio\nactive = peak = 0\nasync def handler(event, context):\n    global active, peak\n    active += 1\n    peak = max(peak, active)\n    await asyncio.sleep(0.3)\n    active -= 1\n    return {'peak': peak}",
    );
    let shim = Shim::start(&handler, &[]);
    let threads: Vec<_> = (0..8)
        .map(|_| {
            std::thread::spawn({
                let port = shim.port;
                move || request(port, "GET", "/", &[], b"")
            })
        })
        .collect();
    let mut peak = 0;
    for t in threads {
        let r = t.join().unwrap();
        assert_eq!(r.status, 200);
        peak = peak.max(r.json()["peak"].as_u64().unwrap());
    }
    // One worker, yet several invocations were awaiting at the same time.
    assert!(peak > 1, "async invocations ran one at a time");
}

#[test]
fn a_handler_that_failed_to_load_answers_503_never_200() {
    let dir = tempfile::tempdir().unwrap();
    for (file, code, needle) in [
        (
            "syntax.py",
            "def handler(event:\n    return 1",
            "SyntaxError",
        ),
        (
            "nohandler.py",
            "def other():\n    return 1",
            "defines no handler",
        ),
        (
            "importerr.py",
            "import kipper_no_such_module\ndef handler():\n    return 1",
            "kipper_no_such_module",
        ),
        ("exits.py", "import sys\nsys.exit(3)", "SystemExit"),
    ] {
        let handler = write(dir.path(), file, code);
        let shim = Shim::spawn(&handler, &[]);
        let r = harness::request_when_bound(
            shim.port,
            "POST",
            "/event",
            &[],
            b"{}",
            std::time::Duration::from_secs(10),
        );
        harness::assert_private_load_failure(&shim, &r, needle);
        assert!(
            !r.text().contains(file),
            "{file}: no file names in the body"
        );
        assert_eq!(shim.get("/").status, 503);
        assert_eq!(shim.get("/health").status, 200);
        let ready = shim.get("/ready");
        assert_eq!(ready.status, 503);
        assert_eq!(
            ready.text(),
            harness::LOAD_FAILED_BODY,
            "/ready is as private"
        );
    }
}

#[test]
fn prints_are_tagged_with_the_request_id() {
    let dir = tempfile::tempdir().unwrap();
    let handler = write(
        dir.path(),
        "handler.py",
        "import sys\ndef handler(event, context):\n    print('Processing:', event)\n    print('to-stderr', file=sys.stderr)\n    return {'processed': True}",
    );
    let shim = Shim::start(&handler, &[]);
    let r = request(
        shim.port,
        "POST",
        "/event",
        &[("x-request-id", "py-req-9")],
        br#"{"id":9}"#,
    );
    assert_eq!(r.json(), json!({"processed": true}));
    std::thread::sleep(std::time::Duration::from_millis(200));
    let logs = shim.logs();
    let line = logs
        .lines()
        .find(|l| l.contains("Processing: {'id': 9}"))
        .unwrap_or_else(|| panic!("{logs}"));
    assert!(line.contains("py-req-9"), "{line}");
    let line = logs
        .lines()
        .find(|l| l.contains("to-stderr"))
        .unwrap_or_else(|| panic!("{logs}"));
    assert!(
        line.contains("py-req-9") && line.contains("stderr"),
        "{line}"
    );
}
