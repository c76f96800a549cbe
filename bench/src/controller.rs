//! kipper-controller against an API server over HTTPS (the in-memory one of
//! `kipper-fake-apiserver`, reached through a kubeconfig, as on a cluster): the time from
//! `kip function create` to every child applied and the status written, a burst of Functions
//! created at once, and the controller's CPU and peak RSS. The baseline measured in the same
//! run is the API server's own round trip (one GET through the same TLS client), times the
//! requests one reconcile makes.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use kipper_fake_apiserver::ApiServer;
use serde_json::{Value, json};

use crate::poll::process::{cpu_seconds, peak_rss_mib};

/// The namespace of every benchmark Function.
const NS: &str = "bench";
/// How long one Function may take to converge before the run is abandoned.
const CONVERGE: Duration = Duration::from_secs(120);

/// What one run measured.
#[derive(Debug)]
pub struct ClusterFigures {
    /// Wall time of each `kip function create` until Ready with every child applied.
    pub create_to_ready: Vec<Duration>,
    /// Wall time of the `kip` process alone, per create.
    pub kip_runs: Vec<Duration>,
    /// Functions of the burst, and the time until all were Ready.
    pub burst: (usize, Duration),
    /// API requests the controller made per reconciled Function in the burst.
    pub requests_per_function: f64,
    /// One GET through the TLS client (median of 200).
    pub api_round_trip: Duration,
    /// Controller CPU seconds over the burst.
    pub burst_cpu_s: f64,
    /// Controller peak RSS after the burst (MiB).
    pub peak_rss_mib: f64,
}

/// The controller process; killed on drop.
struct Controller(Child);

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn ready(function: &Value) -> bool {
    function["status"]["observedGeneration"] == function["metadata"]["generation"]
        && function["status"]["conditions"]
            .as_array()
            .is_some_and(|cs| {
                cs.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
}

fn function_path(name: &str) -> String {
    format!("/apis/kipper.run/v1alpha1/namespaces/{NS}/functions/{name}")
}

/// The children an http Function gets (the controller applies them all before Ready).
fn children(name: &str) -> [String; 4] {
    [
        format!("/api/v1/namespaces/{NS}/configmaps/{name}-code"),
        format!("/apis/apps/v1/namespaces/{NS}/deployments/{name}"),
        format!("/api/v1/namespaces/{NS}/services/{name}"),
        format!("/apis/networking.k8s.io/v1/namespaces/{NS}/ingresses/{name}"),
    ]
}

fn converged(api: &ApiServer, name: &str) -> bool {
    api.get(&function_path(name)).is_some_and(|f| ready(&f))
        && children(name).iter().all(|p| api.get(p).is_some())
}

fn wait_converged(api: &ApiServer, names: &[String]) -> anyhow::Result<()> {
    let deadline = Instant::now() + CONVERGE;
    let mut pending: Vec<&String> = names.iter().collect();
    while !pending.is_empty() {
        pending.retain(|n| !converged(api, n));
        anyhow::ensure!(
            Instant::now() < deadline,
            "{} Functions not Ready after {CONVERGE:?}",
            pending.len()
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok(())
}

fn start_controller(binary: &Path, api: &ApiServer) -> anyhow::Result<(Controller, u16)> {
    let port = free_port()?;
    let child = Command::new(binary)
        .env("KUBECONFIG", api.kubeconfig_path())
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env("KIPPER_CLUSTER_DOMAIN", "bench.kipper.run")
        .env("KIPPER_LISTEN", format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .context("start kipper-controller")?;
    Ok((Controller(child), port))
}

fn wait_ready_endpoint(port: u16) -> anyhow::Result<()> {
    use std::io::{Read, Write};
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let answered = std::net::TcpStream::connect(("127.0.0.1", port))
            .and_then(|mut s| {
                s.write_all(b"GET /ready HTTP/1.1\r\nHost: c\r\nConnection: close\r\n\r\n")?;
                let mut r = String::new();
                s.read_to_string(&mut r)?;
                Ok(r.starts_with("HTTP/1.1 200"))
            })
            .unwrap_or(false);
        if answered {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the controller never became ready"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn function_object(name: &str) -> Value {
    json!({
        "apiVersion": "kipper.run/v1alpha1", "kind": "Function",
        "metadata": {"name": name, "namespace": NS, "labels": {"kipper.run/project": NS}},
        "spec": {"port": 8080, "runtime": "node",
                 "source": {"code": "module.exports = async () => ({ ok: true })\n"}}
    })
}

/// Runs the scenario: `creates` single `kip function create`s, then a burst of `burst`.
pub fn run(creates: usize, burst: usize) -> anyhow::Result<ClusterFigures> {
    let binaries = crate::build::release_binaries(&["kipper-controller", "kip"])?;
    let (controller_bin, kip_bin): (&PathBuf, &PathBuf) = (&binaries[0], &binaries[1]);
    let api = ApiServer::start();
    api.namespace(NS);
    let (controller, port) = start_controller(controller_bin, &api)?;
    wait_ready_endpoint(port)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;

    // Baseline: one GET through kube's TLS client.
    let api_round_trip = runtime.block_on(async {
        let client = api.client().await;
        let namespaces: kube::Api<k8s_openapi::api::core::v1::Namespace> = kube::Api::all(client);
        let mut times = Vec::new();
        for _ in 0..200 {
            let t = Instant::now();
            namespaces.get(NS).await?;
            times.push(t.elapsed());
        }
        times.sort();
        anyhow::Ok(times[times.len() / 2])
    })?;

    let dir = tempfile::tempdir()?;
    let code = dir.path().join("index.js");
    std::fs::write(&code, "module.exports = async () => ({ ok: true })\n")?;
    let mut create_to_ready = Vec::new();
    let mut kip_runs = Vec::new();
    for i in 0..creates {
        let name = format!("single-{i}");
        let started = Instant::now();
        let out = Command::new(kip_bin)
            .args([
                "function",
                "create",
                &name,
                "--runtime",
                "node",
                "--project",
                NS,
            ])
            .arg("--code-file")
            .arg(&code)
            .env("KUBECONFIG", api.kubeconfig_path())
            .env("KIPPER_CLUSTER_DOMAIN", "bench.kipper.run")
            .output()
            .context("run kip")?;
        kip_runs.push(started.elapsed());
        anyhow::ensure!(
            out.status.success(),
            "kip failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        wait_converged(&api, std::slice::from_ref(&name))?;
        create_to_ready.push(started.elapsed());
    }

    let pid = controller.0.id();
    let cpu_before = cpu_seconds(pid).unwrap_or(f64::NAN);
    api.clear_log();
    let names: Vec<String> = (0..burst).map(|i| format!("burst-{i}")).collect();
    let started = Instant::now();
    runtime.block_on(async {
        let client = api.client().await;
        let functions: kube::Api<kube::api::DynamicObject> = kube::Api::namespaced_with(
            client,
            NS,
            &kube::discovery::ApiResource {
                group: "kipper.run".into(),
                version: "v1alpha1".into(),
                api_version: "kipper.run/v1alpha1".into(),
                kind: "Function".into(),
                plural: "functions".into(),
            },
        );
        let creates = names.iter().map(|name| {
            let functions = functions.clone();
            async move {
                let object: kube::api::DynamicObject =
                    serde_json::from_value(function_object(name))?;
                functions
                    .create(&kube::api::PostParams::default(), &object)
                    .await?;
                anyhow::Ok(())
            }
        });
        futures::future::try_join_all(creates).await
    })?;
    wait_converged(&api, &names)?;
    let burst_time = started.elapsed();
    let burst_cpu_s = cpu_seconds(pid).unwrap_or(f64::NAN) - cpu_before;
    let requests = api.log().len().saturating_sub(burst);
    Ok(ClusterFigures {
        create_to_ready,
        kip_runs,
        burst: (burst, burst_time),
        requests_per_function: requests as f64 / burst as f64,
        api_round_trip,
        burst_cpu_s,
        peak_rss_mib: peak_rss_mib(pid).unwrap_or(f64::NAN),
    })
}
