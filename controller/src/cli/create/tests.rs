//! Unit tests of flag parsing and spec building.
use clap::Parser;

use super::*;
use crate::cli::{FunctionCommand, Kip, KipCommand};

fn parse(args: &[&str]) -> CreateArgs {
    let mut full = vec!["kip", "function", "create"];
    full.extend_from_slice(args);
    let KipCommand::Function(f) = Kip::try_parse_from(full).unwrap().command else {
        panic!("not a kip function command");
    };
    match f.command {
        FunctionCommand::Create(c) => *c,
        other => panic!("{other:?}"),
    }
}

fn err(args: &[&str], code: Option<&str>) -> String {
    build_spec(None, &parse(args), code.map(str::to_owned))
        .unwrap_err()
        .to_string()
}

#[test]
fn every_seed_flag_lands_in_the_spec() {
    let a = parse(&[
        "f",
        "--code-file",
        "x.js",
        "--runtime",
        "node",
        "--trigger",
        "postgres",
        "--source",
        "db",
        "--query",
        "SELECT 1",
        "--mark-done",
        "UPDATE t SET d = 1 WHERE id = {{id}}",
        "--port",
        "9000",
        "--idle-timeout",
        "60",
        "--dependency",
        "pg@8.11.5",
        "--dependency",
        "@types/node@20.1.0",
        "--volume",
        "cache:/data",
    ]);
    let s = build_spec(None, &a, Some("code".into())).unwrap();
    assert_eq!(s.port, 9000);
    assert_eq!(s.idle_timeout, Some(60));
    assert_eq!(s.runtime, Runtime::Node);
    let src = s.source.as_ref().unwrap();
    assert_eq!(src.code.as_deref(), Some("code"));
    assert_eq!(src.dependencies["pg"], "8.11.5");
    assert_eq!(src.dependencies["@types/node"], "20.1.0");
    assert_eq!(s.volumes[0].mount_path, "/data");
    let t = &s.triggers[0];
    assert_eq!(t.kind, TriggerType::Postgres);
    assert_eq!(t.get("source"), Some("db"));
    assert_eq!(t.get("query"), Some("SELECT 1"));
    assert!(t.get("markDone").unwrap().contains("{{id}}"));

    let r = build_spec(
        None,
        &parse(&[
            "f",
            "--image",
            "i",
            "--trigger",
            "redis",
            "--source",
            "c",
            "--list",
            "jobs",
        ]),
        None,
    )
    .unwrap();
    assert_eq!(r.triggers[0].get("list"), Some("jobs"));
    let m = build_spec(
        None,
        &parse(&[
            "f",
            "--image",
            "i",
            "--trigger",
            "minio",
            "--source",
            "s",
            "--bucket",
            "up",
        ]),
        None,
    )
    .unwrap();
    assert_eq!(m.triggers[0].get("bucket"), Some("up"));
    let c = build_spec(
        None,
        &parse(&[
            "f",
            "--image",
            "i",
            "--trigger",
            "cron",
            "--schedule",
            "0 2 * * *",
        ]),
        None,
    )
    .unwrap();
    assert_eq!(c.triggers[0].schedule.as_deref(), Some("0 2 * * *"));
    let h = build_spec(None, &parse(&["f", "--image", "i"]), None).unwrap();
    assert_eq!(h.triggers[0].kind, TriggerType::Http);
    assert_eq!(h.port, 8080);
}

#[test]
fn errors_name_the_flag_and_the_fix() {
    assert!(err(&["f", "--code-file", "x.js"], Some("c")).contains("--code-file needs --runtime"));
    assert!(err(&["f"], None).contains("--image"));
    assert!(
        err(
            &[
                "f",
                "--image",
                "i",
                "--trigger",
                "postgres",
                "--source",
                "db"
            ],
            None
        )
        .contains("needs --query")
    );
    assert!(
        err(
            &["f", "--image", "i", "--trigger", "postgres", "--query", "q"],
            None
        )
        .contains("needs --source")
    );
    assert!(
        err(
            &["f", "--image", "i", "--trigger", "redis", "--source", "c"],
            None
        )
        .contains("needs --list")
    );
    assert!(
        err(
            &["f", "--image", "i", "--trigger", "minio", "--source", "s"],
            None
        )
        .contains("needs --bucket")
    );
    assert!(err(&["f", "--image", "i", "--trigger", "cron"], None).contains("needs --schedule"));
    assert!(
        err(
            &[
                "f",
                "--image",
                "i",
                "--trigger",
                "cron",
                "--schedule",
                "0 25 * * *"
            ],
            None
        )
        .contains("--schedule")
    );
    assert!(
        err(&["f", "--image", "i", "--schedule", "0 2 * * *"], None)
            .contains("--schedule does not apply to --trigger http")
    );
    assert!(err(&["f", "--image", "i", "--query", "q"], None).contains("--query does not apply"));
    let mut full = vec!["kip", "function", "create", "f"];
    for bad in [
        vec!["--image", "i", "--code-file", "x"],
        vec!["--image", "i", "--trigger", "kafka"],
        vec!["--image", "i", "--runtime", "ruby"],
        vec!["--image", "i", "--dependency", "axios"],
        vec!["--image", "i", "--volume", "cache:data"],
        vec!["--image", "i", "--port", "0"],
        vec!["--image", "i", "--idle-timeout", "-1"],
    ] {
        full.truncate(4);
        full.extend(bad.iter());
        assert!(Kip::try_parse_from(&full).is_err(), "{bad:?}");
    }
}

#[test]
fn create_on_an_existing_function_changes_only_what_the_flags_say() {
    let mut existing = build_spec(
        None,
        &parse(&[
            "f",
            "--image",
            "i",
            "--trigger",
            "postgres",
            "--source",
            "db",
            "--query",
            "q1",
        ]),
        None,
    )
    .unwrap();
    existing.env.insert("A".into(), "1".into());
    existing.service_bindings.push(crate::crd::ServiceBinding {
        name: "db".into(),
        prefix: None,
        database: Some("db_f".into()),
    });
    let s = build_spec(
        Some(existing.clone()),
        &parse(&["f", "--query", "q2"]),
        None,
    )
    .unwrap();
    assert_eq!(s.triggers[0].get("query"), Some("q2"));
    assert_eq!(s.triggers[0].get("source"), Some("db"));
    assert_eq!(s.env, existing.env);
    assert_eq!(s.service_bindings, existing.service_bindings);
    assert_eq!(s.image.as_deref(), Some("i"));
    let s = build_spec(
        Some(existing),
        &parse(&["f", "--trigger", "http", "--port", "3000"]),
        None,
    )
    .unwrap();
    assert_eq!(s.triggers.len(), 1);
    assert_eq!(s.triggers[0].kind, TriggerType::Http);
    assert_eq!(s.port, 3000);
    assert_eq!(s.env["A"], "1");
}

#[test]
fn the_schedule_preview_describes_and_lists_five_runs() {
    let s = build_spec(
        None,
        &parse(&[
            "f",
            "--image",
            "i",
            "--trigger",
            "cron",
            "--schedule",
            "0 2 * * *",
        ]),
        None,
    )
    .unwrap();
    let p = schedule_preview(&s).unwrap();
    assert!(p.contains("Every day at 02:00 UTC"), "{p}");
    let runs: Vec<&str> = p.lines().filter(|l| l.starts_with("  ")).collect();
    assert_eq!(runs.len(), 5, "{p}");
    assert!(runs.iter().all(|l| l.contains(" 02:00 UTC (")), "{p}");
}

#[test]
fn health_path_is_set_kept_and_cleared() {
    let a = parse(&["f", "--image", "img:1", "--health-path", "/healthz"]);
    let s = build_spec(None, &a, None).unwrap();
    assert_eq!(s.health_path.as_deref(), Some("/healthz"));
    // An update that does not name it keeps it; an empty value removes it.
    let kept = build_spec(Some(s.clone()), &parse(&["f", "--port", "9000"]), None).unwrap();
    assert_eq!(kept.health_path.as_deref(), Some("/healthz"));
    let cleared = build_spec(Some(s.clone()), &parse(&["f", "--health-path", ""]), None).unwrap();
    assert_eq!(cleared.health_path, None);
    // Switching to inline code drops it: kipper-shim's /ready is the health then.
    let code = parse(&["f", "--code-file", "x.js", "--runtime", "node"]);
    let inline = build_spec(Some(s), &code, Some("module.exports = () => 1".into())).unwrap();
    assert_eq!(inline.health_path, None);
}
