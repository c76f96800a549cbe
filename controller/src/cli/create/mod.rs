//! `kip function create`: flags -> `FunctionSpec` (new, or merged into an existing one so
//! bindings, env and secrets survive), the `--schedule` preview and `--dry-run` rendering.

use std::collections::BTreeMap;

use chrono::Utc;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::Api;

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
        // Inline code runs on kipper-shim, whose /ready the probes use.
        spec.health_path = None;
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
    if let Some(path) = &args.health_path {
        spec.health_path = Some(path.clone()).filter(|p| !p.is_empty());
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
    let kind = args
        .trigger
        .map(TriggerArg::trigger_type)
        .unwrap_or(current);
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
    let mut settings = RenderSettings::default();
    if let Some(domain) = &args.cluster_domain {
        settings.cluster_domain =
            crate::config::validate_cluster_domain(domain, "--cluster-domain")?;
    }
    let rendered = render::render(&function, &catalog, &settings);
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
                s.push_str(&crate::yaml::to_string(v)?);
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
    if let Some(deleted) = existing
        .as_ref()
        .and_then(|f| f.metadata.deletion_timestamp.as_ref())
    {
        return Err(Error::Invalid(format!(
            "function {} in {ns} is still terminating (deleted at {}): wait until `kip function list` no longer shows it, then create it again",
            args.name, deleted.0
        )));
    }
    let spec = build_spec(existing.as_ref().map(|f| f.spec.clone()), args, code)?;
    spec.validate(&args.name)?;
    if let Some(source) = &args.source {
        super::bindings::require_service(client, &ns, source, "--source").await?;
    }
    let claims: Api<k8s_openapi::api::core::v1::PersistentVolumeClaim> =
        Api::namespaced(client.clone(), &ns);
    for (volume, _) in &args.volumes {
        let claim = crate::services::volume::claim_name(volume);
        if claims.get_opt(&claim).await?.is_none() {
            return Err(bad(format!(
                "--volume {volume}: no volume {volume} in {ns} (PVC {claim}): create it with `kip volume create {volume}` or fix the name"
            )));
        }
    }
    if let Some(preview) = schedule_preview(&spec) {
        io.err.write_all(preview.as_bytes()).map_err(io_error)?;
    }
    let http = spec
        .serving_trigger()
        .is_some_and(|t| t.kind == TriggerType::Http);
    let verb = match existing {
        Some(mut f) => {
            // Replace with the read resourceVersion: a concurrent edit fails instead of being
            // lost; labels, bindings, env and finalizers are kept.
            f.spec = spec;
            api.replace(&args.name, &super::post_params(), &f).await?;
            "updated"
        }
        None => {
            api.create(
                &super::post_params(),
                &function_object(fargs, &args.name, spec),
            )
            .await?;
            "created"
        }
    };
    writeln!(io.out, "function {} {verb} in {ns}", args.name).map_err(io_error)?;
    if http {
        let url = match &args.cluster_domain {
            Some(domain) => Some(format!(
                "https://{}",
                render::function_host(
                    &args.name,
                    &RenderSettings {
                        cluster_domain: domain.clone(),
                        ..RenderSettings::default()
                    }
                )
            )),
            None => endpoint_from_status(&api, &args.name).await,
        };
        match url {
            Some(url) => writeln!(io.out, "URL: {url}").map_err(io_error)?,
            None => writeln!(
                io.err,
                "URL: not known yet (the controller writes it); see `kip function list`, or pass --cluster-domain"
            )
            .map_err(io_error)?,
        }
    }
    Ok(())
}

/// How long `create` waits for the controller to write the URL of a new HTTP function.
const ENDPOINT_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// The URL the controller wrote in `status.endpoint`, waiting for it a few seconds.
async fn endpoint_from_status(api: &Api<Function>, name: &str) -> Option<String> {
    let deadline = tokio::time::Instant::now() + ENDPOINT_WAIT;
    loop {
        let endpoint = api
            .get_opt(name)
            .await
            .ok()
            .flatten()
            .and_then(|f| f.status)
            .and_then(|s| s.endpoint);
        if endpoint.is_some() || tokio::time::Instant::now() >= deadline {
            return endpoint;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
