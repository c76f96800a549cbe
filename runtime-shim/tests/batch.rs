//! Batch mode (`KIPPER_MODE=batch`): one invocation, the result printed as
//! JSON, and the exit codes of CONTRACT section 1, with real workers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

use harness::{batch, write};

#[test]
fn node_batch_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "ok.js",
            "module.exports = async (event, context) => ({ saw: event.type, env: process.env.KIPPER_TRIGGER, at: event.timestamp.endsWith('Z') });",
            0,
        ),
        ("undefined.js", "module.exports = () => {};", 0),
        (
            "status500.js",
            "module.exports = async () => ({ statusCode: 500, body: 'x' });",
            1,
        ),
        (
            "status200.js",
            "module.exports = async () => ({ statusCode: 200, body: 'x' });",
            0,
        ),
        (
            "error.js",
            "module.exports = async () => ({ error: 'quota exceeded' });",
            1,
        ),
        (
            "falsy-error.js",
            "module.exports = async () => ({ error: null, n: 1 });",
            0,
        ),
        (
            "throws.js",
            "module.exports = async () => { throw new Error('sync failed'); };",
            1,
        ),
        ("load.js", "module.exports = ;", 1),
        (
            "exit0.js",
            "module.exports = () => { process.exit(0); };",
            0,
        ),
        (
            "exit2.js",
            "module.exports = () => { process.exit(2); };",
            1,
        ),
    ];
    for (file, code, expected) in cases {
        let handler = write(dir.path(), file, code);
        let (exit, stdout, stderr) = batch(&handler, &[("KIPPER_TRIGGER", "test")]);
        assert_eq!(exit, expected, "{file}: stdout={stdout} stderr={stderr}");
        let printed: serde_json::Value =
            serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{file}: {e}: {stdout}"));
        match file {
            "ok.js" => assert_eq!(
                printed,
                serde_json::json!({"saw": "test", "env": "test", "at": true})
            ),
            "throws.js" => {
                assert_eq!(printed["error"], "sync failed");
                assert!(
                    stderr.contains("Error: sync failed"),
                    "stack trace logged: {stderr}"
                );
            }
            "load.js" => assert!(
                printed["error"]
                    .as_str()
                    .unwrap()
                    .contains("failed to load"),
                "{printed}"
            ),
            _ => {}
        }
    }
}

#[test]
fn python_batch_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        // The seed's test-run example: `def main():` reading KIPPER_TRIGGER.
        (
            "main.py",
            "import os\ndef main():\n    return {'test': os.environ.get('KIPPER_TRIGGER') == 'test'}",
            0,
        ),
        (
            "event.py",
            "def handler(event):\n    return event['type']",
            0,
        ),
        ("none.py", "def handler(event, context):\n    pass", 0),
        (
            "status.py",
            "def handler():\n    return {'statusCode': 404}",
            1,
        ),
        ("error.py", "def handler():\n    return {'error': 'bad'}", 1),
        (
            "raises.py",
            "def handler():\n    raise RuntimeError('cron failed')",
            1,
        ),
        ("async.py", "async def main():\n    return 'async ran'", 0),
        ("load.py", "import kipper_missing_module", 1),
        ("exit0.py", "import sys\ndef main():\n    sys.exit(0)", 0),
        ("exit3.py", "import sys\ndef main():\n    sys.exit(3)", 1),
    ];
    for (file, code, expected) in cases {
        let handler = write(dir.path(), file, code);
        let (exit, stdout, stderr) = batch(&handler, &[("KIPPER_TRIGGER", "test")]);
        assert_eq!(exit, expected, "{file}: stdout={stdout} stderr={stderr}");
        let printed: serde_json::Value =
            serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{file}: {e}: {stdout}"));
        match file {
            "main.py" => assert_eq!(printed, serde_json::json!({"test": true})),
            "event.py" => assert_eq!(printed, "test"),
            "none.py" => assert_eq!(printed, serde_json::Value::Null),
            "raises.py" => assert!(stderr.contains("RuntimeError: cron failed"), "{stderr}"),
            "async.py" => assert_eq!(printed, "async ran"),
            _ => {}
        }
    }
}

#[test]
fn cron_is_the_default_trigger() {
    let dir = tempfile::tempdir().unwrap();
    let handler = write(
        dir.path(),
        "handler.py",
        "import os\ndef handler(event):\n    return [event['type'], os.environ['KIPPER_TRIGGER']]",
    );
    let (exit, stdout, _) = batch(&handler, &[]);
    assert_eq!(exit, 0);
    assert_eq!(stdout.trim(), r#"["cron","cron"]"#);
}
