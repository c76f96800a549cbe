//! Batch mode (`KIPPER_MODE=batch`), for CronJobs and test runs: one worker,
//! one invocation with `event = {type, timestamp}`, the result printed as JSON
//! on stdout, and the exit code of CONTRACT section 1: 0, or 1 when the
//! handler throws, fails to load, returns `statusCode >= 400` or a truthy
//! `error` field (the worker decides, it sees the raw value).

use std::io::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kipper_contract::Trigger;

use crate::config::Config;
use crate::pool::{self, worker};
use crate::protocol::{BodyKind, FLAG_BATCH, FLAG_EVENT, Invoke};
use crate::{ExitCode, Result};

/// The event a batch invocation receives.
pub fn event(trigger: Option<&str>, now: chrono::DateTime<chrono::Utc>) -> String {
    serde_json::json!({
        "type": trigger.unwrap_or(Trigger::Cron.as_str()),
        "timestamp": now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    })
    .to_string()
}

fn print(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Reports a worker that never became ready (the handler failed to load, or
/// its connection could not be accepted) and returns the exit code, 1.
fn load_failed(why: &dyn std::fmt::Display) -> ExitCode {
    tracing::error!(message = "the handler failed to load", error = %why);
    print(
        &serde_json::json!({ "error": format!("the handler failed to load: {why}") }).to_string(),
    );
    1
}

/// Runs the handler once; returns the process exit code.
pub async fn run(mut config: Config) -> Result<ExitCode> {
    // A cron run's event trigger is the schedule unless said otherwise.
    if config.trigger.is_none() {
        config.trigger = Some(Trigger::Cron.as_str().into());
    }
    let spec = match pool::prepare(&config).await {
        Ok(spec) => spec,
        Err(error) => {
            tracing::error!(message = "cannot start the handler", %error);
            print(&serde_json::json!({ "error": error.to_string() }).to_string());
            return Ok(1);
        }
    };
    let running = match worker::start(0, 0, &spec).await {
        Ok(running) => running,
        Err(worker::StartError::LoadFailed(message)) => return Ok(load_failed(&message)),
        Err(worker::StartError::Other(crate::Error::Worker(failure))) => {
            return Ok(load_failed(&failure));
        }
        Err(worker::StartError::Other(error)) => {
            tracing::error!(message = "cannot start the worker", %error);
            print(&serde_json::json!({ "error": error.to_string() }).to_string());
            return Ok(1);
        }
    };
    let body = event(config.trigger.as_deref(), chrono::Utc::now());
    let request_id = format!(
        "batch-{}",
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0)
    );
    let deadline_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| (d + config.timeout).as_millis() as u64)
        .unwrap_or(0);
    let Some(mut ticket) = running.worker.invoke(Invoke {
        id: 0,
        flags: FLAG_BATCH | FLAG_EVENT,
        body_kind: BodyKind::Json,
        deadline_ms,
        method: "POST",
        path: "/",
        query: "",
        headers: b"content-type:application/json",
        request_id: &request_id,
        body: body.as_bytes(),
    }) else {
        print(r#"{"error":"the worker exited before the invocation"}"#);
        return Ok(1);
    };
    let code = match tokio::time::timeout(config.timeout, ticket.reply()).await {
        Ok(worker::Delivery::Reply(reply)) => {
            print(&String::from_utf8_lossy(&reply.body));
            i32::from(reply.status != 0)
        }
        Ok(worker::Delivery::NotSent | worker::Delivery::Lost) => {
            // The handler ended the process itself (process.exit, sys.exit):
            // its exit status is the run's.
            let mut child = running.child;
            let status = tokio::time::timeout(Duration::from_secs(2), child.wait()).await;
            return Ok(match status {
                Ok(Ok(status)) if status.success() => {
                    print("null");
                    0
                }
                other => {
                    let status = other
                        .map(|s| s.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string()))
                        .unwrap_or_else(|_| "still running".into());
                    print(&serde_json::json!({ "error": format!("the handler's process exited ({status}) during the invocation") }).to_string());
                    let _ = child.kill().await;
                    1
                }
            });
        }
        Err(_) => {
            print(&serde_json::json!({ "error": format!("the handler did not finish within {:?} (KIPPER_TIMEOUT)", config.timeout) }).to_string());
            1
        }
    };
    drop(ticket);
    // Close the socket so the worker exits, and give its last log lines a moment.
    running.worker.kill(false);
    let mut child = running.child;
    if tokio::time::timeout(Duration::from_secs(2), child.wait())
        .await
        .is_err()
    {
        let _ = child.kill().await;
    }
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_has_type_and_rfc3339_utc_timestamp() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-01-02T03:04:05.678Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        let v: serde_json::Value = serde_json::from_str(&event(Some("test"), now)).unwrap();
        assert_eq!(v["type"], "test");
        assert_eq!(v["timestamp"], "2026-01-02T03:04:05.678Z");
        let v: serde_json::Value = serde_json::from_str(&event(None, now)).unwrap();
        assert_eq!(v["type"], "cron");
    }
}
