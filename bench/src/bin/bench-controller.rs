//! kipper-controller hot paths: rendering a Function (every reconcile and every
//! `kip --dry-run`) and counting a bucket's pending changes (every KEDA poll of a minio
//! function). Baselines measured in the same run: serializing the rendered objects to JSON
//! (what an apply sends anyway) and one pass over the bucket listing.
//!
//! `cargo run --release -p kipper-bench --bin bench-controller`

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use kipper_bench::report::Table;
use kipper_controller::crd::{
    Function, FunctionSpec, Runtime, ServiceBinding, Source, Trigger, TriggerType,
};
use kipper_controller::facts::{ServiceCatalog, ServiceFacts, ServiceKind};
use kipper_controller::pending::{Checkpoint, pending_changes};
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
    Ok(())
}
