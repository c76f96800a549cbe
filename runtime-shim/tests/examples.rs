//! The handlers in `examples/` (the README's quick start) do what their comments say.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

use std::path::PathBuf;

use harness::{Shim, batch, request};
use serde_json::json;

fn example(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(path)
}

#[test]
fn hello_examples_greet() {
    for file in ["hello-node/index.js", "hello-python/handler.py"] {
        let shim = Shim::start(&example(file), &[]);
        let r = shim.post_json("/", r#"{"name":"Ada"}"#);
        assert_eq!(
            (r.status, r.json()["hello"].clone()),
            (200, json!("Ada")),
            "{file}"
        );
        let r = shim.get("/hello?name=Bob");
        assert_eq!(r.json()["hello"], "Bob", "{file}");
        assert_eq!(r.json()["path"], "/hello", "{file}");
        assert_eq!(r.header("content-type"), Some("application/json"), "{file}");
    }
}

#[test]
fn event_examples_process_rows_and_refuse_bad_ones() {
    for file in ["event-node/index.js", "event-python/handler.py"] {
        let shim = Shim::start(&example(file), &[("KIPPER_TRIGGER", "postgres")]);
        let r = request(
            shim.port,
            "POST",
            "/event",
            &[],
            br#"{"id":42,"customer":"acme","amount":99.99}"#,
        );
        assert_eq!(
            (r.status, r.json()),
            (200, json!({"processed": 42})),
            "{file}"
        );
        let r = request(shim.port, "POST", "/event", &[], br#"{"customer":"acme"}"#);
        assert_eq!(r.status, 422, "{file}");
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert!(shim.logs().contains("postgres"), "{file}: {}", shim.logs());
    }
}

#[test]
fn cron_example_runs_once() {
    let (exit, stdout, stderr) = batch(
        &example("cron-python/handler.py"),
        &[("KIPPER_TRIGGER", "test")],
    );
    assert_eq!(exit, 0, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(v["test"], true);
    assert!(
        stderr.contains("skipping outbound notifications"),
        "{stderr}"
    );
}
