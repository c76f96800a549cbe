//! The bench-poll table and chart: every drain (kipper-poll, other sidecars, the peer queues)
//! beside the ceilings measured in the same run, with kipper-poll's ratio to each.

use std::path::Path;

use super::Measured;
use crate::report::{Table, bar, svg_bars};

/// What one `bench-poll` run measured.
#[derive(Debug)]
pub struct Summary {
    /// Trigger name.
    pub source: &'static str,
    /// Events per drain.
    pub rows: u64,
    /// kipper-poll first, then the others.
    pub runs: Vec<Measured>,
    /// The source's claim + ack rate without HTTP.
    pub source_rate: f64,
    /// Machine CPU µs per event of the source ceiling.
    pub source_machine_us: Option<f64>,
    /// The handler's direct request rate.
    pub handler_rate: f64,
    /// Further ceilings (label, events/s).
    pub extra: Vec<(String, f64)>,
}

/// What the machine's CPU allows: kipper-poll's and the source ceiling's CPU per event.
#[derive(Debug, Clone, Copy)]
pub struct CpuBound {
    /// Machine CPU µs per event of the source ceiling.
    pub ceiling_us: f64,
    /// Machine CPU µs per event of kipper-poll's run.
    pub ours_us: f64,
    /// `ceiling_us / ours_us`: kipper-poll's share of the ceiling when both use the same CPU.
    pub ratio: f64,
}

fn fmt(value: Option<f64>, decimals: usize) -> String {
    value.map_or_else(|| "n/a".into(), |v| format!("{v:.decimals$}"))
}

impl Summary {
    fn ours(&self) -> f64 {
        self.runs.first().map_or(0.0, Measured::rate)
    }

    /// Machine CPU µs per event of drain `m`.
    fn machine_us(m: &Measured) -> Option<f64> {
        m.machine_cpu_seconds
            .filter(|_| m.delivered > 0)
            .map(|c| c * 1e6 / m.delivered as f64)
    }

    /// kipper-poll's and the source ceiling's CPU per event, when both were measured.
    pub fn cpu_bound(&self) -> Option<CpuBound> {
        let ceiling_us = self.source_machine_us?;
        let ours_us = Self::machine_us(self.runs.first()?)?;
        Some(CpuBound {
            ceiling_us,
            ours_us,
            ratio: ceiling_us / ours_us,
        })
    }

    /// The table: one row per drain, then the ceilings.
    pub fn table(&self) -> Table {
        let mut table = Table::new(
            format!(
                "kipper-poll {} benchmark: {} events, no-op handler",
                self.source, self.rows
            ),
            &[
                "run",
                "events/s",
                "p50 ms",
                "p99 ms",
                "CPU %",
                "peak RSS MiB",
                "machine µs/event",
                "vs source ceiling",
                "vs handler ceiling",
                "kipper-poll / this",
                "",
            ],
        );
        let best = self
            .runs
            .iter()
            .map(Measured::rate)
            .chain([self.source_rate, self.handler_rate])
            .fold(0.0, f64::max);
        let ours = self.ours();
        for m in &self.runs {
            let rate = m.rate();
            let label = if m.finished {
                m.label.clone()
            } else {
                format!("{} (timed out, {} done)", m.label, m.delivered)
            };
            table.row(vec![
                label,
                format!("{rate:.0}"),
                fmt(m.p50_ms, 2),
                fmt(m.p99_ms, 2),
                fmt(m.cpu_seconds.map(|c| 100.0 * c / m.seconds), 0),
                fmt(m.peak_rss_mib, 1),
                fmt(Self::machine_us(m), 0),
                format!("{:.2}", rate / self.source_rate),
                format!("{:.2}", rate / self.handler_rate),
                format!("{:.2}", ours / rate),
                bar(rate, best, 30),
            ]);
        }
        let ceilings = [
            (
                "ceiling: source claim + ack, no HTTP".to_string(),
                self.source_rate,
            ),
            (
                "ceiling: handler, direct requests".to_string(),
                self.handler_rate,
            ),
        ];
        for (i, (label, rate)) in ceilings.iter().chain(&self.extra).enumerate() {
            let mut row = vec![label.clone(), format!("{rate:.0}")];
            row.extend(std::iter::repeat_n(String::new(), 4));
            // Only the source ceiling is measured alone on the machine.
            row.push(if i == 0 {
                fmt(self.source_machine_us, 0)
            } else {
                String::new()
            });
            row.push(format!("{:.2}", rate / self.source_rate));
            row.push(format!("{:.2}", rate / self.handler_rate));
            row.push(format!("{:.2}", ours / rate));
            row.push(bar(*rate, best, 30));
            table.row(row);
        }
        table
    }

    /// Writes the events/s of every row as an SVG bar chart to `path`.
    pub fn write_chart(&self, path: &Path) -> anyhow::Result<()> {
        let mut bars: Vec<(String, f64)> = self
            .runs
            .iter()
            .map(|m| (m.label.clone(), m.rate()))
            .collect();
        // A source ceiling far above the handler's would squash every other bar: it is named
        // in the title instead.
        let off_scale = self.source_rate > 2.0 * self.handler_rate;
        if !off_scale {
            bars.push(("ceiling: source claim + ack".into(), self.source_rate));
        }
        bars.push(("ceiling: handler direct".into(), self.handler_rate));
        bars.extend(self.extra.iter().cloned());
        let mut title = format!(
            "{} trigger vs peers: {} events to a no-op handler (events/s, same run)",
            self.source, self.rows
        );
        if off_scale {
            title += &format!("; source claim + ack ceiling {:.0}/s", self.source_rate);
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, svg_bars(&title, "events/s", &bars))?;
        Ok(())
    }
}
