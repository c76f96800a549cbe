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
    /// The handler's direct request rate.
    pub handler_rate: f64,
    /// Further ceilings (label, events/s).
    pub extra: Vec<(String, f64)>,
}

fn fmt(value: Option<f64>, decimals: usize) -> String {
    value.map_or_else(|| "n/a".into(), |v| format!("{v:.decimals$}"))
}

impl Summary {
    fn ours(&self) -> f64 {
        self.runs.first().map_or(0.0, Measured::rate)
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
        for (label, rate) in ceilings.iter().chain(&self.extra) {
            let mut row = vec![label.clone(), format!("{rate:.0}")];
            row.extend(std::iter::repeat_n(String::new(), 4));
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
