//! What a user sees at start and stop, through the real binary: a bad
//! setting is exit code 2 and exactly one line on stderr (no backtrace, even
//! with RUST_BACKTRACE=1); a failure at run time is exit code 1; a handler's
//! exception is logged at ERROR; Ctrl-C stops the shim and its workers
//! without a traceback per worker or a worker "replaced" during shutdown.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

use std::os::unix::process::CommandExt as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use harness::{Shim, free_port, write};

/// Runs kipper-shim with `args` and `env` (RUST_BACKTRACE=1 on) to its exit.
fn run(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let work = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kipper-shim"))
        .args(args)
        .env_remove("KIPPER_TRIGGER")
        .env_remove("KIPPER_MODE")
        .env("KIPPER_WORK_DIR", work.path())
        .env("RUST_BACKTRACE", "1")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn refused(args: &[&str], env: &[(&str, &str)], line: &str) {
    let (code, stdout, stderr) = run(args, env);
    assert_eq!(code, 2, "exit code 2 for bad configuration: {stderr}");
    assert_eq!(stderr, format!("{line}\n"), "exactly one line on stderr");
    assert_eq!(stdout, "");
}

#[test]
fn a_bad_setting_is_one_line_and_exit_code_2() {
    refused(
        &["examples/x.js"],
        &[("KIPPER_MODE", "serve")],
        "kipper-shim: KIPPER_MODE=serve is not supported; set it to http, batch or install",
    );
    refused(
        &["handler.rb"],
        &[],
        "kipper-shim: cannot infer the runtime of handler.rb: name it .js/.cjs/.mjs or .py, or set KIPPER_RUNTIME=node|python",
    );
}

#[test]
fn a_malformed_value_names_the_variable() {
    refused(
        &["index.js"],
        &[("PORT", "eighty")],
        "kipper-shim: PORT: invalid value 'eighty' for '--port <PORT>': invalid digit found in string",
    );
    refused(
        &["index.js", "--no-such-flag"],
        &[],
        "kipper-shim: unexpected argument '--no-such-flag' found; see kipper-shim --help",
    );
}

#[test]
fn a_port_in_use_is_a_failure_at_run_time() {
    let dir = tempfile::tempdir().unwrap();
    let handler = write(dir.path(), "index.js", "module.exports = () => 'ok';");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let (code, _, stderr) = run(
        &[handler.to_str().unwrap()],
        &[
            ("PORT", &port),
            ("KIPPER_BIND", "127.0.0.1"),
            ("KIPPER_ADMIN_PORT", "0"),
        ],
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(&format!("cannot listen on 127.0.0.1:{port}")),
        "{stderr}"
    );
    assert!(!stderr.contains("stack backtrace"), "{stderr}");
}

#[test]
fn a_thrown_exception_is_logged_at_error_with_the_request_id() {
    let dir = tempfile::tempdir().unwrap();
    for (file, code) in [
        (
            "index.js",
            "module.exports = () => { throw new Error('boom-node'); };",
        ),
        (
            "handler.py",
            "def handler(event, context):\n    raise ValueError('boom-python')\n",
        ),
    ] {
        let handler = write(dir.path(), file, code);
        let shim = Shim::start(&handler, &[]);
        let answer = shim.post_json("/event", "{}");
        assert_eq!(answer.status, 500);
        let deadline = Instant::now() + Duration::from_secs(10);
        // The stack spans lines; the fields follow its last line.
        let entry = loop {
            let logs = shim.logs();
            if let Some(at) = logs.find(" ERROR handler threw: ")
                && logs[at..].contains("request_id=")
            {
                break logs[at..].to_owned();
            }
            assert!(Instant::now() < deadline, "no error line:\n{logs}");
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(entry.contains("boom-"), "{entry}");
    }
}

/// Ctrl-C in a terminal signals the whole foreground process group.
fn ctrl_c_output(file: &str, code: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let handler = write(dir.path(), file, code);
    let port = free_port();
    let log = dir.path().join("shim.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_kipper-shim"))
        .arg(&handler)
        .env_remove("KIPPER_TRIGGER")
        .env_remove("KIPPER_MODE")
        .env("PORT", port.to_string())
        .env("KIPPER_BIND", "127.0.0.1")
        .env("KIPPER_ADMIN_PORT", "0")
        .env("KIPPER_WORKERS", "2")
        .env("KIPPER_WORK_DIR", dir.path().join("work"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        // A group of its own, as a shell gives a foreground job.
        .process_group(0)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !harness::try_request(port, "GET", "/ready", &[], b"").is_ok_and(|r| r.status == 200) {
        assert!(Instant::now() < deadline, "not ready");
        std::thread::sleep(Duration::from_millis(20));
    }
    let group = format!("-{}", child.id());
    assert!(
        Command::new("kill")
            .args(["-INT", "--", &group])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "no exit after Ctrl-C");
        std::thread::sleep(Duration::from_millis(20));
    };
    (
        status.code().unwrap_or(-1),
        std::fs::read_to_string(&log).unwrap(),
    )
}

#[test]
fn ctrl_c_stops_workers_quietly() {
    for (file, code) in [
        (
            "handler.py",
            "def handler(event, context):\n    return 'ok'\n",
        ),
        ("index.js", "module.exports = () => 'ok';"),
    ] {
        let (exit, log) = ctrl_c_output(file, code);
        assert_eq!(exit, 0, "{log}");
        assert!(!log.contains("KeyboardInterrupt"), "{file}: {log}");
        assert!(!log.contains("Traceback"), "{file}: {log}");
        assert!(!log.contains("replacing it"), "{file}: {log}");
        assert!(
            !log.contains('\u{1b}'),
            "no colour codes in a file: {log:?}"
        );
    }
}

#[test]
fn help_exits_zero() {
    let (code, stdout, _) = run(&["--help"], &[]);
    assert_eq!(code, 0);
    assert!(stdout.contains("KIPPER_FUNCTION_PATH"), "{stdout}");
}
