//! Validation of a `FunctionSpec`: what the schema cannot say (combinations, names that
//! become DNS labels, SQL identifiers or variable names). Errors name the field, the flag and
//! the fix.

use super::{FunctionSpec, Trigger, TriggerType};
use crate::{Error, Result};

/// Admin (metrics) ports of kipper-poll and kipper-shim, which share the pod's network.
const ADMIN_PORTS: [i32; 2] = [9091, 9092];

impl FunctionSpec {
    /// Checks what the schema cannot: the combinations. Errors name the field and the fix.
    pub fn validate(&self, name: &str) -> Result<()> {
        validate_function_name(name)?;
        let code = self.source.as_ref().and_then(|s| s.code.as_deref());
        match (&self.image, code) {
            (None, None) => {
                return Err(Error::Invalid(
                    "spec.image or spec.source.code is required: give --image or --code-file"
                        .into(),
                ));
            }
            (None, Some(_)) if self.runtime.handler_file().is_none() => {
                return Err(Error::Invalid(format!(
                    "spec.runtime {} cannot run inline code: use node or python, or give an image",
                    self.runtime.as_str()
                )));
            }
            _ => {}
        }
        if let Some(path) = &self.health_path {
            if self.image.is_none() {
                return Err(Error::Invalid(
                    "spec.healthPath applies to --image functions only: inline code runs on kipper-shim, whose /ready the probes use; remove --health-path"
                        .into(),
                ));
            }
            let ok = path.starts_with('/')
                && path.len() <= 256
                && path
                    .chars()
                    .all(|c| c.is_ascii_graphic() && !matches!(c, '"' | '\\' | '#'));
            if !ok {
                return Err(Error::Invalid(format!(
                    "spec.healthPath {path:?} is not a URL path: use an absolute path such as /health"
                )));
            }
        }
        if ADMIN_PORTS.contains(&self.port) {
            return Err(Error::Invalid(format!(
                "spec.port {} is taken in the pod by the metrics of kipper-poll (9091) and kipper-shim (9092): use another --port, e.g. 8080",
                self.port
            )));
        }
        if !(1..=65535).contains(&self.port) {
            return Err(Error::Invalid(format!(
                "spec.port {} is out of range: use 1-65535",
                self.port
            )));
        }
        let triggers = self.effective_triggers();
        let serving = triggers
            .iter()
            .filter(|t| t.kind != TriggerType::Cron)
            .count();
        let crons = triggers.len() - serving;
        if serving > 1 || crons > 1 {
            return Err(Error::Invalid(
                "spec.triggers: at most one http or event trigger and one cron trigger".into(),
            ));
        }
        for t in &triggers {
            validate_trigger(t)?;
        }
        for v in &self.volumes {
            if !v.mount_path.starts_with('/') {
                return Err(Error::Invalid(format!(
                    "spec.volumes {}: mountPath {:?} must be an absolute path",
                    v.name, v.mount_path
                )));
            }
            validate_dns_label("spec.volumes name", &v.name, 56)?;
        }
        for b in &self.service_bindings {
            validate_dns_label("spec.serviceBindings name", &b.name, 63)?;
            if let Some(db) = &b.database {
                validate_database_name(db)?;
            }
            if let Some(p) = &b.prefix {
                validate_env_prefix(p)?;
            }
        }
        for key in self.env.keys() {
            validate_env_name("spec.env", key)?;
            if key == "PORT" || key.starts_with("KIPPER_") {
                return Err(Error::Invalid(format!(
                    "spec.env {key} is set by Kipper: use spec.port (--port) for PORT; KIPPER_* names are reserved"
                )));
            }
        }
        for origin in &self.csp_allowlist {
            // Each entry becomes a CSP source token: no separators or quotes may slip in.
            let ok = !origin.is_empty()
                && !origin
                    .chars()
                    .any(|c| c.is_whitespace() || matches!(c, ';' | ',' | '\'' | '"'));
            if !ok {
                return Err(Error::Invalid(format!(
                    "spec.cspAllowlist {origin:?} is not a CSP source: use an origin such as https://cdn.example.com"
                )));
            }
        }
        Ok(())
    }
}

fn validate_trigger(t: &Trigger) -> Result<()> {
    let need = |key: &str, flag: &str| {
        t.get(key).map(|_| ()).ok_or_else(|| {
            Error::Invalid(format!(
                "trigger {} needs {flag} (spec.triggers[].config.{key})",
                t.kind.as_str()
            ))
        })
    };
    match t.kind {
        TriggerType::Http => Ok(()),
        TriggerType::Cron => {
            let schedule = t.schedule.as_deref().ok_or_else(|| {
                Error::Invalid(
                    "trigger cron needs --schedule (spec.triggers[].schedule), e.g. \"0 2 * * *\""
                        .into(),
                )
            })?;
            crate::schedule::Schedule::parse(schedule).map(|_| ())
        }
        TriggerType::Postgres | TriggerType::Mysql => {
            need("source", "--source")?;
            need("query", "--query")
        }
        TriggerType::Redis => {
            need("source", "--source")?;
            need("list", "--list")
        }
        TriggerType::Minio => {
            need("source", "--source")?;
            need("bucket", "--bucket")
        }
        TriggerType::Rabbitmq => Err(Error::Invalid(
            "trigger rabbitmq is not supported by kipper-poll: use postgres, mysql, redis or minio"
                .into(),
        )),
    }
}

/// A function name must be a DNS label short enough for every derived name:
/// `<fn>-test-<8 hex>` (Job, 63) and `<fn>-cron` plus the CronJob's 11-character suffix (63).
pub fn validate_function_name(name: &str) -> Result<()> {
    validate_dns_label("function name", name, 47)
}

fn validate_dns_label(what: &str, value: &str, max: usize) -> Result<()> {
    let ok = !value.is_empty()
        && value.len() <= max
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !value.starts_with('-')
        && !value.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "{what} {value:?} is not valid: use at most {max} lowercase letters, digits and '-', starting and ending with a letter or digit"
        )))
    }
}

/// Database names are spliced into `CREATE DATABASE`, so only `[a-z_][a-z0-9_]{0,62}` passes.
pub fn validate_database_name(name: &str) -> Result<()> {
    let ok = (1..=63).contains(&name.len())
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "database name {name:?} is not valid: use at most 63 lowercase letters, digits and '_', not starting with a digit (--database)"
        )))
    }
}

/// Binding prefixes become variable name prefixes: `[A-Z_][A-Z0-9_]*`.
pub fn validate_env_prefix(prefix: &str) -> Result<()> {
    let ok = prefix
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_uppercase() || b == b'_')
        && prefix
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "--prefix {prefix:?} is not valid: use uppercase letters, digits and '_', e.g. ORDERS_DB_"
        )))
    }
}

/// Environment variable names: `[A-Za-z_][A-Za-z0-9_]*`.
pub fn validate_env_name(what: &str, key: &str) -> Result<()> {
    let ok = key
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "{what}: {key:?} is not a valid variable name: use letters, digits and '_', not starting with a digit"
        )))
    }
}

/// The per-function database name `<service>_<function>_<env>` (`_<env>` only with an environment).
pub fn default_database_name(service: &str, function: &str, environment: Option<&str>) -> String {
    let mut name = format!("{service}_{function}");
    if let Some(env) = environment.filter(|e| !e.is_empty()) {
        name.push('_');
        name.push_str(env);
    }
    name.replace('-', "_")
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn spec() -> FunctionSpec {
        FunctionSpec {
            image: Some("img".into()),
            port: 8080,
            ..Default::default()
        }
    }

    #[test]
    fn validation_names_the_missing_setting() {
        let mut s = spec();
        s.triggers = vec![Trigger {
            kind: TriggerType::Postgres,
            schedule: None,
            config: [("source".to_owned(), "db".to_owned())].into(),
        }];
        let e = s.validate("f").unwrap_err().to_string();
        assert!(e.contains("--query"), "{e}");
        let mut s = spec();
        s.image = None;
        assert!(
            s.validate("f")
                .unwrap_err()
                .to_string()
                .contains("--code-file")
        );
        assert!(spec().validate("Bad_Name").is_err());
        assert!(spec().validate(&"a".repeat(48)).is_err());
        let mut s = spec();
        s.port = 9091;
        assert!(
            s.validate("f")
                .unwrap_err()
                .to_string()
                .contains("kipper-poll")
        );
        let mut s = spec();
        s.env.insert("KIPPER_TRIGGER".into(), "x".into());
        assert!(
            s.validate("f")
                .unwrap_err()
                .to_string()
                .contains("reserved")
        );
        let mut s = spec();
        s.csp_allowlist.push("https://a.com; script-src *".into());
        assert!(
            s.validate("f")
                .unwrap_err()
                .to_string()
                .contains("cspAllowlist")
        );
    }

    #[test]
    fn health_path_is_an_image_path() {
        let mut s = spec();
        s.health_path = Some("/healthz".into());
        s.validate("f").unwrap();
        s.health_path = Some("health".into());
        assert!(s.validate("f").unwrap_err().to_string().contains("/health"));
        s.health_path = Some("/a b".into());
        assert!(s.validate("f").is_err());
        s.health_path = Some("/health".into());
        s.image = None;
        s.source = Some(crate::crd::Source {
            code: Some("module.exports = () => 1".into()),
            ..Default::default()
        });
        let e = s.validate("f").unwrap_err().to_string();
        assert!(e.contains("--image functions only"), "{e}");
    }

    #[test]
    fn database_names_are_derived_and_validated() {
        assert_eq!(
            default_database_name("eventdb", "domain-sync", Some("dev")),
            "eventdb_domain_sync_dev"
        );
        assert_eq!(default_database_name("db", "api", None), "db_api");
        assert!(validate_database_name("ok_name1").is_ok());
        for bad in ["", "1abc", "x;drop", "Upper", &"a".repeat(64)] {
            assert!(validate_database_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn prefixes_and_env_names_are_checked() {
        assert!(validate_env_prefix("ORDERS_").is_ok());
        assert!(validate_env_prefix("orders").is_err());
        assert!(validate_env_name("env", "A_1").is_ok());
        assert!(validate_env_name("env", "1A").is_err());
    }
}
