//! CONTRACT section 1 against real node workers: export variants, sync and
//! async handlers, event and context, result mapping, throws, load failures.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

use harness::{Shim, request, write};
use serde_json::json;

const ECHO: &str = r#"
module.exports = async (event, context) => ({ statusCode: 200, body: { event, context, trigger: process.env.KIPPER_TRIGGER || null } });
"#;

#[test]
fn event_and_context_follow_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let handler = write(dir.path(), "index.js", ECHO);
    let shim = Shim::start(&handler, &[("KIPPER_TRIGGER", "postgres")]);

    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let r = request(
        shim.port,
        "POST",
        "/orders/7?a=1&b=two",
        &[("content-type", "application/json"), ("x-test", "yes")],
        br#"{"x":1}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["event"], json!({"x": 1}));
    let c = &v["context"];
    assert_eq!(c["method"], "POST");
    assert_eq!(c["path"], "/orders/7");
    assert_eq!(c["query"], json!({"a": "1", "b": "two"}));
    assert_eq!(c["headers"]["x-test"], "yes");
    assert_eq!(c["headers"]["content-type"], "application/json");
    assert_eq!(c["trigger"], "http");
    assert_eq!(c["requestId"], r.header("x-request-id").unwrap());
    assert!(c["deadline"].as_u64().unwrap() > before, "{c}");
    assert_eq!(
        v["trigger"], "postgres",
        "KIPPER_TRIGGER is visible to the handler"
    );

    // Text bodies stay text; an empty body is null.
    let r = request(
        shim.port,
        "POST",
        "/",
        &[("content-type", "text/plain")],
        b"hello",
    );
    assert_eq!(r.json()["event"], "hello");
    let r = shim.get("/");
    assert_eq!(r.json()["event"], serde_json::Value::Null);

    // POST /event: the JSON body is the event whatever the content type; the trigger is the event's.
    let r = request(
        shim.port,
        "POST",
        "/event",
        &[],
        br#"{"id":42,"amount":99.99}"#,
    );
    let v = r.json();
    assert_eq!(v["event"], json!({"id": 42, "amount": 99.99}));
    assert_eq!(v["context"]["trigger"], "postgres");
    let r = request(shim.port, "POST", "/event", &[], b"{nope");
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .contains("not valid JSON")
    );

    // A request id sent by the caller is kept.
    let r = request(shim.port, "GET", "/", &[("x-request-id", "abc-123")], b"");
    assert_eq!(r.json()["context"]["requestId"], "abc-123");
    assert_eq!(r.header("x-request-id"), Some("abc-123"));

    assert_eq!(shim.get("/health").json(), json!({"ok": true}));
    assert_eq!(shim.get("/ready").status, 200);
}

const MAPPING: &str = r#"
module.exports.handler = function (event) {
  switch (event.kind) {
    case 'status': return { statusCode: 201, headers: { 'X-A': 'b' }, body: 'created' };
    case 'status-json': return { statusCode: 409, body: { conflict: true } };
    case 'status-empty': return { statusCode: 204 };
    case 'own-type': return { statusCode: 200, headers: { 'content-type': 'text/html' }, body: '<b>x</b>' };
    case 'string': return 'plain';
    case 'undefined': return undefined;
    case 'number': return 42;
    case 'array': return [1, 2];
    case 'object': return { a: 1 };
    case 'throw': throw new Error('boom');
    case 'reject': return Promise.reject(new Error('async boom'));
    case 'resolve': return Promise.resolve({ statusCode: 202, body: { later: true } });
    case 'bad-status': return { statusCode: 42 };
    case 'event-retry': return { statusCode: 503, body: { error: 'downstream busy' } };
  }
};
"#;

#[test]
fn results_map_to_http_as_the_contract_says() {
    let dir = tempfile::tempdir().unwrap();
    let handler = write(dir.path(), "index.js", MAPPING);
    let shim = Shim::start(&handler, &[]);
    let call = |kind: &str| shim.post_json("/", &json!({ "kind": kind }).to_string());

    let r = call("status");
    assert_eq!(
        (r.status, r.text().as_str(), r.header("x-a")),
        (201, "created", Some("b"))
    );
    assert!(r.header("content-type").unwrap().starts_with("text/plain"));
    let r = call("status-json");
    assert_eq!((r.status, r.json()), (409, json!({"conflict": true})));
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(call("status-empty").status, 204);
    let r = call("own-type");
    assert_eq!(
        (r.header("content-type"), r.text().as_str()),
        (Some("text/html"), "<b>x</b>")
    );
    let r = call("string");
    assert_eq!((r.status, r.text().as_str()), (200, "plain"));
    assert_eq!(call("undefined").json(), json!({"ok": true}));
    assert_eq!(call("number").json(), json!(42));
    assert_eq!(call("array").json(), json!([1, 2]));
    assert_eq!(call("object").json(), json!({"a": 1}));
    let r = call("throw");
    assert_eq!((r.status, r.json()), (500, json!({"error": "boom"})));
    let r = call("reject");
    assert_eq!((r.status, r.json()), (500, json!({"error": "async boom"})));
    assert_eq!(call("resolve").status, 202);
    assert_eq!(call("bad-status").status, 500);
    // kipper-poll relies on a handler's non-2xx reaching it from /event.
    let r = request(
        shim.port,
        "POST",
        "/event",
        &[],
        br#"{"kind":"event-retry"}"#,
    );
    assert_eq!(r.status, 503);
    // The thrown error was logged with its stack trace.
    assert!(shim.logs().contains("Error: boom"), "{}", shim.logs());
}

#[test]
fn every_export_variant_loads() {
    let dir = tempfile::tempdir().unwrap();
    let variants = [
        (
            "fn.js",
            "module.exports = (event) => 'plain-fn';",
            "plain-fn",
        ),
        (
            "async.js",
            "module.exports = async () => 'async-fn';",
            "async-fn",
        ),
        (
            "default.js",
            "module.exports.default = async () => 'default';",
            "default",
        ),
        (
            "handler.js",
            "exports.handler = function () { return 'handler'; };",
            "handler",
        ),
        (
            "esm.mjs",
            "export default async function () { return 'esm-default'; }",
            "esm-default",
        ),
        (
            "esm-handler.mjs",
            "export const handler = () => 'esm-handler';",
            "esm-handler",
        ),
        (
            "cjs.cjs",
            "module.exports = { handler: async () => 'cjs' };",
            "cjs",
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
fn a_handler_that_failed_to_load_answers_503_never_200() {
    let dir = tempfile::tempdir().unwrap();
    for (file, code, needle) in [
        (
            "syntax.js",
            "module.exports = async (event => {",
            "SyntaxError",
        ),
        (
            "noexport.js",
            "module.exports = { notAHandler: 1 };",
            "exports no handler",
        ),
        (
            "throws.js",
            "throw new Error('cannot reach config');",
            "cannot reach config",
        ),
        (
            "missing-dep.js",
            "require('kipper-no-such-module'); module.exports = () => 1;",
            "kipper-no-such-module",
        ),
    ] {
        let handler = write(dir.path(), file, code);
        let shim = Shim::spawn(&handler, &[]);
        // Held requests are released with 503 once the load fails.
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
        for _ in 0..3 {
            assert_eq!(shim.get("/").status, 503, "{file}");
        }
        assert_eq!(shim.get("/health").status, 200, "alive while failed");
        let ready = shim.get("/ready");
        assert_eq!(ready.status, 503, "not ready while failed");
        assert_eq!(
            ready.text(),
            harness::LOAD_FAILED_BODY,
            "/ready is as private"
        );
        assert!(shim.logs().contains(needle), "{file}: {}", shim.logs());
    }
}

#[test]
fn handler_logs_are_tagged_with_the_request_id() {
    let dir = tempfile::tempdir().unwrap();
    let handler = write(
        dir.path(),
        "index.js",
        "module.exports = async (event) => { console.log('processing-marker', event.id); await new Promise(r => setTimeout(r, 5)); console.error('after-await-marker'); return {}; };",
    );
    let shim = Shim::start(&handler, &[]);
    let r = request(
        shim.port,
        "POST",
        "/event",
        &[("x-request-id", "req-log-77")],
        br#"{"id":5}"#,
    );
    assert_eq!(r.status, 200);
    std::thread::sleep(std::time::Duration::from_millis(200));
    let logs = shim.logs();
    let line = logs
        .lines()
        .find(|l| l.contains("processing-marker 5"))
        .unwrap_or_else(|| panic!("{logs}"));
    assert!(line.contains("req-log-77"), "{line}");
    let line = logs
        .lines()
        .find(|l| l.contains("after-await-marker"))
        .unwrap_or_else(|| panic!("{logs}"));
    assert!(
        line.contains("req-log-77") && line.contains("stderr"),
        "{line}"
    );
}

#[test]
fn large_bodies_cross_the_worker_protocol_intact() {
    let dir = tempfile::tempdir().unwrap();
    let handler = write(
        dir.path(),
        "index.js",
        "module.exports = (event) => ({ n: event.items.length, last: event.items[event.items.length - 1] });",
    );
    let py_dir = tempfile::tempdir().unwrap();
    let py = write(
        py_dir.path(),
        "handler.py",
        "def handler(event):\n    return {'n': len(event['items']), 'last': event['items'][-1]}",
    );
    let items: Vec<String> = (0..200_000).map(|i| format!("item-{i}")).collect();
    let body = json!({ "items": items }).to_string();
    assert!(body.len() > 2_000_000);
    for h in [handler, py] {
        let shim = Shim::start(&h, &[]);
        for _ in 0..3 {
            let r = shim.post_json("/", &body);
            assert_eq!(r.status, 200, "{}", r.text());
            assert_eq!(r.json(), json!({"n": 200_000, "last": "item-199999"}));
        }
    }
}

#[test]
fn a_js_file_under_type_module_is_loaded_as_esm() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "package.json", r#"{"type":"module"}"#);
    write(
        dir.path(),
        "lib.js",
        "export const greet = (n) => `hi ${n}`;",
    );
    let handler = write(
        dir.path(),
        "index.js",
        "import { greet } from './lib.js';\nexport async function handler(event, context) { return greet(context.method); }",
    );
    let shim = Shim::start(&handler, &[]);
    assert_eq!(shim.get("/").text(), "hi GET", "{}", shim.logs());
    // Nothing to install: no npm run for a package.json without dependencies.
    assert!(
        !shim.logs().contains("installing dependencies"),
        "{}",
        shim.logs()
    );
}
