//! Plain-text tables a person reads at a glance: every benchmark prints its
//! figures through [`Table`], so all reports look alike; [`svg_bars`] draws the
//! same figures as a bar chart where a picture reads faster.

use std::fmt::Write as _;

/// A table of rows under a title; columns are sized to their widest cell.
#[derive(Debug, Default)]
pub struct Table {
    title: String,
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with a title and column headers.
    pub fn new(title: impl Into<String>, header: &[&str]) -> Self {
        Self {
            title: title.into(),
            header: header.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// Appends one row; missing cells print empty.
    pub fn row(&mut self, cells: Vec<String>) -> &mut Self {
        self.rows.push(cells);
        self
    }

    /// Renders the table with a rule under the header; numbers align right.
    pub fn render(&self) -> String {
        let columns = self.header.len();
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().take(columns).enumerate() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let mut out = String::new();
        let _ = writeln!(out, "\n{}", self.title);
        let line = |cells: &[String], out: &mut String| {
            for (i, width) in widths.iter().enumerate() {
                let cell = cells.get(i).map(String::as_str).unwrap_or("");
                let numeric = cell.chars().next().is_some_and(|c| c.is_ascii_digit());
                if numeric && i > 0 {
                    let _ = write!(out, "  {cell:>width$}");
                } else {
                    let _ = write!(out, "  {cell:<width$}");
                }
            }
            out.push('\n');
        };
        line(&self.header, &mut out);
        let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
        line(&rule, &mut out);
        for row in &self.rows {
            line(row, &mut out);
        }
        out
    }
}

/// A bar of `width` cells proportional to `value / max`, for ratio columns.
pub fn bar(value: f64, max: f64, width: usize) -> String {
    let filled = if max > 0.0 {
        ((value / max) * width as f64).round() as usize
    } else {
        0
    };
    "#".repeat(filled.min(width))
}

/// A horizontal bar chart as a standalone SVG document: one labelled bar per
/// `(label, value)`, scaled to the largest, with the value printed after it.
/// Rows whose label starts with `ceiling` are drawn grey, the first row (ours) dark.
pub fn svg_bars(title: &str, unit: &str, bars: &[(String, f64)]) -> String {
    const LABEL: f64 = 330.0;
    const BAR: f64 = 420.0;
    const ROW: f64 = 26.0;
    let max = bars.iter().map(|(_, v)| *v).fold(0.0, f64::max);
    let height = 50.0 + ROW * bars.len() as f64 + 10.0;
    let width = LABEL + BAR + 110.0;
    let escape = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    };
    let mut out = String::new();
    let _ = write!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" \
         font-family=\"sans-serif\" font-size=\"13\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"10\" y=\"22\" font-size=\"15\" font-weight=\"bold\">{}</text>\n",
        escape(title)
    );
    for (i, (label, value)) in bars.iter().enumerate() {
        let y = 40.0 + ROW * i as f64;
        let w = if max > 0.0 { BAR * value / max } else { 0.0 };
        let fill = if label.starts_with("ceiling") {
            "#b0b0b0"
        } else if i == 0 {
            "#1f4e79"
        } else {
            "#6fa8dc"
        };
        let _ = write!(
            out,
            "<text x=\"{:.0}\" y=\"{:.0}\" text-anchor=\"end\">{}</text>\n\
             <rect x=\"{LABEL}\" y=\"{y:.0}\" width=\"{w:.1}\" height=\"{:.0}\" fill=\"{fill}\"/>\n\
             <text x=\"{:.1}\" y=\"{:.0}\">{value:.0} {}</text>\n",
            LABEL - 8.0,
            y + 15.0,
            escape(label),
            ROW - 6.0,
            LABEL + w + 6.0,
            y + 15.0,
            escape(unit)
        );
    }
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_to_the_widest_cell() {
        let mut table = Table::new("t", &["name", "events/s"]);
        table.row(vec!["kipper-poll".into(), "31000".into()]);
        table.row(vec!["ceiling".into(), "5".into()]);
        let text = table.render();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[2].len(), lines[3].len(), "{text}");
        assert!(lines[5].ends_with("       5"), "{text}");
    }

    #[test]
    fn svg_has_one_bar_per_row_and_escapes_labels() {
        let svg = svg_bars(
            "t",
            "req/s",
            &[("a<b".into(), 10.0), ("ceiling".into(), 20.0)],
        );
        assert_eq!(svg.matches("<rect x=").count(), 2, "{svg}");
        assert!(svg.contains("a&lt;b"), "{svg}");
        assert!(svg.contains("width=\"420.0\""), "{svg}");
    }

    #[test]
    fn bar_is_proportional_and_capped() {
        assert_eq!(bar(5.0, 10.0, 10), "#####");
        assert_eq!(bar(20.0, 10.0, 10), "##########");
        assert_eq!(bar(1.0, 0.0, 10), "");
    }
}
