//! kipper-controller hot paths: rendering a Function (every reconcile and every
//! `kip --dry-run`), counting a bucket's pending changes (every KEDA poll of a minio
//! function), and the release binaries against an API server over HTTPS (`kip function
//! create` to Ready, a burst of 200 Functions, the controller's CPU and peak RSS). Baselines
//! measured in the same run: serializing the rendered objects to JSON (what an apply sends
//! anyway), one pass over the bucket listing, and one API round trip.
//!
//! `cargo run --release -p kipper-bench --bin bench-controller`

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use kipper_bench::report::Table;
use kipper_contract::checkpoint::{Checkpoint, pending_changes};
use kipper_controller::crd::{
    Function, FunctionSpec, Runtime, ServiceBinding, Source, Trigger, TriggerType,
};
use kipper_controller::facts::{ServiceCatalog, ServiceFacts, ServiceKind};
use kipper_controller::render::{RenderSettings, render};

fn per_op(iterations: u32, mut f: impl FnMut()) -> Duration {
    // Warm up, then time the batch.
    for _ in 0..iterations / 10 {
        f();
    }
    let start = Instant::now();
    for _ in 0..iterations {
        f();
    }
    start.elapsed() / iterations
}

fn function(name: &str, triggers: Vec<Trigger>) -> Function {
    let mut f = Function::new(
        name,
        FunctionSpec {
            port: 8080,
            runtime: Runtime::Node,
            source: Some(Source {
                code: Some("module.exports = async (e) => ({ ok: true, e })\n".repeat(20)),
                handler: None,
                dependencies: BTreeMap::from([
                    ("axios".into(), "1.6.7".into()),
                    ("pg".into(), "8.11.5".into()),
                ]),
            }),
            service_bindings: vec![ServiceBinding {
                name: "db".into(),
                prefix: None,
                database: None,
            }],
            triggers,
            ..Default::default()
        },
    );
    f.metadata.namespace = Some("bench".into());
    f.metadata.uid = Some("uid-1".into());
    f
}

fn trigger(kind: TriggerType, config: &[(&str, &str)], schedule: Option<&str>) -> Trigger {
    Trigger {
        kind,
        schedule: schedule.map(str::to_owned),
        config: config
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    }
}

fn us(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e6)
}

fn main() -> anyhow::Result<()> {
    kipper_tls::install_crypto_provider();
    let settings = RenderSettings::default();
    let catalog: ServiceCatalog = [("db", ServiceKind::Postgres)]
        .into_iter()
        .map(|(n, k)| (n.to_owned(), ServiceFacts::conventional(n, k, "bench")))
        .collect();
    let sql = |table: &str| format!("SELECT * FROM {table} WHERE done = false");
    let (orders, ledger) = (sql("orders"), sql("ledger"));
    let cases = [
        ("http", function("web", vec![])),
        (
            "postgres",
            function(
                "orders",
                vec![trigger(
                    TriggerType::Postgres,
                    &[("source", "db"), ("query", &orders)],
                    None,
                )],
            ),
        ),
        (
            "postgres+cron",
            function(
                "ledger",
                vec![
                    trigger(
                        TriggerType::Postgres,
                        &[("source", "db"), ("query", &ledger)],
                        None,
                    ),
                    trigger(TriggerType::Cron, &[], Some("*/5 * * * *")),
                ],
            ),
        ),
    ];
    let mut table = Table::new(
        "render: Function -> objects (per Function)",
        &[
            "trigger",
            "objects",
            "render us",
            "serialize us (baseline)",
            "render / serialize",
            "renders/s",
        ],
    );
    for (label, f) in &cases {
        let rendered = render(f, &catalog, &settings);
        let n = rendered.objects.len();
        let render_t = per_op(2000, || {
            black_box(render(black_box(f), &catalog, &settings));
        });
        let ser_t = per_op(2000, || {
            black_box(
                rendered
                    .to_values()
                    .map(|v| serde_json::to_vec(&v).map(|b| b.len()))
                    .ok(),
            );
        });
        table.row(vec![
            (*label).to_owned(),
            n.to_string(),
            us(render_t),
            us(ser_t),
            format!("{:.2}", render_t.as_secs_f64() / ser_t.as_secs_f64()),
            format!("{:.0}", 1.0 / render_t.as_secs_f64()),
        ]);
    }
    print!("{}", table.render());

    let mut table = Table::new(
        "pending changes of a minio bucket: listing vs checkpoint (1% changed)",
        &[
            "objects",
            "diff ms",
            "one pass ms (baseline)",
            "diff / pass",
            "% of KEDA's 10 s poll",
        ],
    );
    for n in [10_000usize, 100_000, 1_000_000] {
        let listed: BTreeMap<String, String> = (0..n)
            .map(|i| (format!("uploads/{i:08}.png"), format!("\"{i:x}\"")))
            .collect();
        let mut objects = listed.clone();
        for i in (0..n).step_by(100) {
            objects.insert(format!("uploads/{i:08}.png"), "\"old\"".into());
        }
        let cp = Checkpoint {
            version: 1,
            prefix: String::new(),
            objects,
        };
        let iterations = u32::try_from((2_000_000 / n).max(3))?;
        let diff = per_op(iterations, || {
            black_box(pending_changes(black_box(&listed), Some(&cp)));
        });
        let pass = per_op(iterations, || {
            black_box(listed.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>());
        });
        anyhow::ensure!(
            pending_changes(&listed, Some(&cp)) == (n / 100) as u64,
            "the diff miscounted"
        );
        table.row(vec![
            n.to_string(),
            format!("{:.2}", diff.as_secs_f64() * 1e3),
            format!("{:.2}", pass.as_secs_f64() * 1e3),
            format!("{:.1}", diff.as_secs_f64() / pass.as_secs_f64()),
            format!("{:.3}", diff.as_secs_f64() / 10.0 * 100.0),
        ]);
    }
    print!("{}", table.render());

    let figures = kipper_bench::controller::run(10, 200)?;
    let ms = |d: &Duration| format!("{:.1}", d.as_secs_f64() * 1e3);
    let median = |v: &[Duration]| {
        let mut v = v.to_vec();
        v.sort();
        v[v.len() / 2]
    };
    let (load, cpus) = kipper_bench::poll::process::load();
    let mut table = Table::new(
        format!(
            "release kip + kipper-controller over HTTPS (in-memory API server; load {load:.2} on {cpus} CPUs)"
        ),
        &["measure", "value", "baseline: API round trip ms", "ratio"],
    );
    let trip = figures.api_round_trip;
    let create = median(&figures.create_to_ready);
    table.row(vec![
        "kip create -> Ready, every child applied (median of 10) ms".into(),
        ms(&create),
        ms(&trip),
        format!("{:.0}", create.as_secs_f64() / trip.as_secs_f64()),
    ]);
    table.row(vec![
        "  of which the kip process (median) ms".into(),
        ms(&median(&figures.kip_runs)),
        String::new(),
        String::new(),
    ]);
    let (n, took) = figures.burst;
    table.row(vec![
        format!("burst of {n} Functions -> all Ready, ms"),
        ms(&took),
        String::new(),
        String::new(),
    ]);
    table.row(vec![
        "  Functions reconciled per second".into(),
        format!("{:.0}", n as f64 / took.as_secs_f64()),
        String::new(),
        String::new(),
    ]);
    table.row(vec![
        "  API requests per Function".into(),
        format!("{:.1}", figures.requests_per_function),
        String::new(),
        String::new(),
    ]);
    table.row(vec![
        "  controller CPU over the burst s".into(),
        format!("{:.2}", figures.burst_cpu_s),
        String::new(),
        String::new(),
    ]);
    table.row(vec![
        "controller peak RSS MiB".into(),
        format!("{:.1}", figures.peak_rss_mib),
        String::new(),
        String::new(),
    ]);
    print!("{}", table.render());
    Ok(())
}
