//! `kip function create`: flags -> `FunctionSpec` (new, or merged into an existing one so
//! bindings, env and secrets survive), the `--schedule` preview and `--dry-run` rendering.

use std::collections::BTreeMap;

use chrono::Utc;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};

use super::{CreateArgs, FunctionArgs, Io, OutputFormat, RuntimeArg, TriggerArg, io_error};
use crate::crd::{Function, FunctionSpec, Runtime, Source, Trigger, TriggerType, VolumeMount};
use crate::facts::{ServiceCatalog, ServiceFacts, ServiceKind};
use crate::render::{self, ENVIRONMENT_LABEL, PROJECT_LABEL, RenderSettings};
use crate::schedule::Schedule;
use crate::{Error, Result};

/// Parses `--dependency name@version` (scoped npm names such as `@types/node@20.1.0` too).
pub fn dependency(s: &str) -> Result<(String, String), String> {
    match s.rsplit_once('@') {
        Some((name, version)) if !name.is_empty() && !version.is_empty() => {
            Ok((name.to_owned(), version.to_owned()))
        }
        _ => Err(format!(
            "{s:?} is not name@version: pin an exact version, e.g. axios@1.6.7"
        )),
    }
}

/// Parses `--volume name:/path`.
pub fn volume(s: &str) -> Result<(String, String), String> {
    match s.split_once(':') {
        Some((name, path)) if !name.is_empty() && path.starts_with('/') => {
            Ok((name.to_owned(), path.to_owned()))
        }
        _ => Err(format!(
            "{s:?} is not name:/absolute/path, e.g. cache:/data"
        )),
    }
}

fn trigger_type(t: TriggerArg) -> TriggerType {
    match t {
        TriggerArg::Http => TriggerType::Http,
        TriggerArg::Cron => TriggerType::Cron,
        TriggerArg::Postgres => TriggerType::Postgres,
        TriggerArg::Mysql => TriggerType::Mysql,
        TriggerArg::Redis => TriggerType::Redis,
        TriggerArg::Minio => TriggerType::Minio,
    }
}

fn bad(msg: String) -> Error {
    Error::Invalid(msg)
}

/// Builds the spec from the flags: a new one, or `existing` with only what the flags say
/// changed. `code` is the content of `--code-file`.
pub fn build_spec(
    existing: Option<FunctionSpec>,
    args: &CreateArgs,
    code: Option<String>,
) -> Result<FunctionSpec> {
    let is_new = existing.is_none();
    let mut spec = existing.unwrap_or_else(|| FunctionSpec {
        port: crate::crd::DEFAULT_PORT,
        ..Default::default()
    });

    // Code or image.
    if args.code_file.is_some() && args.runtime.is_none() {
        return Err(bad(
            "--code-file needs --runtime node|python (the runtime that runs the code)".into(),
        ));
    }
    if is_new && args.image.is_none() && args.code_file.is_none() {
        return Err(bad(
            "give --image IMAGE or --code-file PATH --runtime node|python".into(),
        ));
    }
    if let Some(image) = &args.image {
        spec.image = Some(image.clone());
        if let Some(source) = spec.source.as_mut() {
            source.code = None;
        }
    }
    if let Some(code) = code {
        spec.image = None;
        let source = spec.source.get_or_insert_with(Source::default);
        source.code = Some(code);
    }
    if let Some(runtime) = args.runtime {
        spec.runtime = match runtime {
            RuntimeArg::Node => Runtime::Node,
            RuntimeArg::Python => Runtime::Python,
        };
    }
    if !args.dependencies.is_empty() {
        let source = spec.source.get_or_insert_with(Source::default);
        source
            .dependencies
            .extend(args.dependencies.iter().cloned());
    }
    if let Some(port) = args.port {
        spec.port = i32::from(port);
    }
    if let Some(idle) = args.idle_timeout {
        spec.idle_timeout = Some(i32::try_from(idle).map_err(|_| {
            bad(format!(
                "--idle-timeout {idle} is too large: use seconds, e.g. 300"
            ))
        })?);
    }
    for (name, path) in &args.volumes {
        spec.volumes.retain(|v| &v.name != name);
        spec.volumes.push(VolumeMount {
            name: name.clone(),
            mount_path: path.clone(),
        });
    }

    // Trigger: --trigger replaces the triggers; the other flags edit the trigger they belong to.
    let current = spec.primary_trigger();
    let kind = args.trigger.map(trigger_type).unwrap_or(current);
    if args.trigger.is_some() && (is_new || kind != current || spec.triggers.len() > 1) {
        spec.triggers = vec![Trigger {
            kind,
            schedule: None,
            config: BTreeMap::new(),
        }];
    }
    if spec.triggers.is_empty() {
        spec.triggers.push(Trigger {
            kind,
            schedule: None,
            config: BTreeMap::new(),
        });
    }
    let flag_for = |flag: &str, allowed: &[TriggerType]| -> Result<()> {
        if allowed.contains(&kind) {
            Ok(())
        } else {
            Err(bad(format!(
                "{flag} does not apply to --trigger {}: it is for --trigger {}",
                kind.as_str(),
                allowed
                    .iter()
                    .map(|t| t.as_str())
                    .collect::<Vec<_>>()
                    .join("|")
            )))
        }
    };
    use TriggerType as T;
    let sql = [T::Postgres, T::Mysql];
    let event = [T::Postgres, T::Mysql, T::Redis, T::Minio];
    let trigger = spec
        .triggers
        .iter_mut()
        .find(|t| t.kind == kind)
        .ok_or_else(|| bad("internal: trigger missing".into()))?;
    let mut set =
        |flag: &str, key: &str, value: &Option<String>, allowed: &[TriggerType]| -> Result<()> {
            if let Some(v) = value {
                flag_for(flag, allowed)?;
                trigger.config.insert(key.to_owned(), v.clone());
            }
            Ok(())
        };
    set("--source", "source", &args.source, &event)?;
    set("--query", "query", &args.query, &sql)?;
    set("--mark-done", "markDone", &args.mark_done, &sql)?;
    set("--list", "list", &args.list, &[T::Redis])?;
    set("--bucket", "bucket", &args.bucket, &[T::Minio])?;
    if let Some(schedule) = &args.schedule {
        flag_for("--schedule", &[T::Cron])?;
        Schedule::parse(schedule)?;
        trigger.schedule = Some(schedule.clone());
    }
    let need = |flag: &str, ok: bool, example: &str| -> Result<()> {
        if ok {
            Ok(())
        } else {
            Err(bad(format!(
                "--trigger {} needs {flag}, e.g. {flag} {example}",
                kind.as_str()
            )))
        }
    };
    let has = |key: &str| trigger.get(key).is_some();
    match kind {
        T::Cron => need("--schedule", trigger.schedule.is_some(), "\"0 2 * * *\"")?,
        T::Postgres | T::Mysql => {
            need("--source", has("source"), "mydb")?;
            need(
                "--query",
                has("query"),
                "\"SELECT * FROM orders WHERE status = 'pending'\"",
            )?;
        }
        T::Redis => {
            need("--source", has("source"), "cache")?;
            need("--list", has("list"), "jobs")?;
        }
        T::Minio => {
            need("--source", has("source"), "storage")?;
            need("--bucket", has("bucket"), "uploads")?;
        }
        T::Http | T::Rabbitmq => {}
    }
    Ok(spec)
}

/// The schedule preview: description and the next 5 firing times in UTC.
pub fn schedule_preview(spec: &FunctionSpec) -> Option<String> {
    let schedule = spec.cron_trigger()?.schedule?;
    let parsed = Schedule::parse(&schedule).ok()?;
    let mut out = format!(
        "Schedule: {schedule}  ({})\nNext 5 runs (UTC):\n",
        parsed.describe()
    );
    for t in parsed.next_after(Utc::now(), 5) {
        out.push_str(&format!("  {}\n", t.format("%Y-%m-%d %H:%M UTC (%a)")));
    }
    Some(out)
}

fn read_code(args: &CreateArgs) -> Result<Option<String>> {
    let Some(path) = &args.code_file else {
        return Ok(None);
    };
    let code = std::fs::read_to_string(path).map_err(|source| Error::Io {
        context: format!("--code-file {}", path.display()),
        source,
    })?;
    Ok(Some(code))
}

/// The Function object with kip's labels.
fn function_object(fargs: &FunctionArgs, name: &str, spec: FunctionSpec) -> Function {
    let mut labels = BTreeMap::from([(PROJECT_LABEL.to_owned(), fargs.project.clone())]);
    if let Some(env) = fargs.environment.as_ref().filter(|e| !e.is_empty()) {
        labels.insert(ENVIRONMENT_LABEL.to_owned(), env.clone());
    }
    let mut f = Function::new(name, spec);
    f.metadata = ObjectMeta {
        name: Some(name.to_owned()),
        namespace: Some(fargs.namespace()),
        labels: Some(labels),
        ..Default::default()
    };
    f
}

/// `--dry-run`: the Function and every object it renders, with no cluster. Services are
/// assumed to exist with the conventional names of their trigger's type.
pub fn dry_run(fargs: &FunctionArgs, args: &CreateArgs, io: &mut Io<'_>) -> Result<()> {
    crate::crd::validate_function_name(&args.name)?;
    let spec = build_spec(None, args, read_code(args)?)?;
    spec.validate(&args.name)?;
    let ns = fargs.namespace();
    let mut catalog = ServiceCatalog::new();
    for t in spec.effective_triggers() {
        if let (Some(source), Some(kind)) = (t.get("source"), ServiceKind::for_trigger(t.kind)) {
            catalog.insert(
                source.to_owned(),
                ServiceFacts::conventional(source, kind, &ns),
            );
        }
    }
    let function = function_object(fargs, &args.name, spec);
    let rendered = render::render(&function, &catalog, &RenderSettings::default());
    if let Some(p) = rendered.problems.first() {
        return Err(Error::Render {
            part: p.condition,
            reason: p.message.clone(),
        });
    }
    if let Some(preview) = schedule_preview(&function.spec) {
        io.err.write_all(preview.as_bytes()).map_err(io_error)?;
    }
    let mut values = vec![serde_json::to_value(&function)?];
    values.extend(rendered.to_values()?);
    let text = match args.output {
        OutputFormat::Yaml => {
            let mut s = String::new();
            for v in &values {
                s.push_str("---\n");
                s.push_str(&serde_yaml::to_string(v)?);
            }
            s
        }
        OutputFormat::Json => serde_json::to_string_pretty(&values)? + "\n",
    };
    io.out.write_all(text.as_bytes()).map_err(io_error)
}

/// Creates the Function, or updates only what the flags say on an existing one.
pub async fn create(
    fargs: &FunctionArgs,
    args: &CreateArgs,
    client: &kube::Client,
    io: &mut Io<'_>,
) -> Result<()> {
    crate::crd::validate_function_name(&args.name)?;
    let ns = fargs.namespace();
    let api: Api<Function> = Api::namespaced(client.clone(), &ns);
    let code = read_code(args)?;
    let existing = api.get_opt(&args.name).await?;
    let spec = build_spec(existing.as_ref().map(|f| f.spec.clone()), args, code)?;
    spec.validate(&args.name)?;
    if let Some(source) = &args.source {
        super::bindings::require_service(client, &ns, source, "--source").await?;
    }
    if let Some(preview) = schedule_preview(&spec) {
        io.err.write_all(preview.as_bytes()).map_err(io_error)?;
    }
    let verb = match existing {
        Some(mut f) => {
            // Replace with the read resourceVersion: a concurrent edit fails instead of being
            // lost; labels, bindings, env and finalizers are kept.
            f.spec = spec;
            api.replace(&args.name, &PostParams::default(), &f).await?;
            "updated"
        }
        None => {
            api.create(
                &PostParams::default(),
                &function_object(fargs, &args.name, spec),
            )
            .await?;
            "created"
        }
    };
    writeln!(io.out, "function {} {verb} in {ns}", args.name).map_err(io_error)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{FunctionCommand, Kip, KipCommand};

    fn parse(args: &[&str]) -> CreateArgs {
        let mut full = vec!["kip", "function", "create"];
        full.extend_from_slice(args);
        let KipCommand::Function(f) = Kip::try_parse_from(full).unwrap().command;
        match f.command {
            FunctionCommand::Create(c) => c,
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
        assert!(
            err(&["f", "--code-file", "x.js"], Some("c")).contains("--code-file needs --runtime")
        );
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
        assert!(
            err(&["f", "--image", "i", "--trigger", "cron"], None).contains("needs --schedule")
        );
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
        assert!(
            err(&["f", "--image", "i", "--query", "q"], None).contains("--query does not apply")
        );
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
}
