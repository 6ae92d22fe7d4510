//! The tables of a run, as printed and as pasted into the README: one function
//! per table, each reading [`Results`] and nothing else.

use std::fmt::Write as _;

use crate::results::{Results, Row};
use crate::scenario::Scenario;

/// Width of the contender column.
const LABEL: usize = 44;

/// Steps from plain `wasmtime serve` to hero-host as shipped, on hello: each
/// adds one thing, so its cost is that thing's.
const LADDER: &[(&str, &str, &str)] = &[
    (
        "Spin's guarantees (-Wtimeout, spin-* headers, reuse)",
        "hello-wasmtime",
        "hello-wasmtime-like",
    ),
    (
        "hero-host's runtime over wasmtime serve's",
        "hello-wasmtime-like",
        "hello-hero-host-off",
    ),
    (
        "telemetry (metrics, JSON logs)",
        "hello-hero-host-off",
        "hello-hero-host",
    ),
    (
        "all of it: hero-host as shipped vs plain",
        "hello-wasmtime",
        "hello-hero-host",
    ),
];

/// The tables, as printed.
pub fn render(results: &Results) -> String {
    let mut out = String::new();
    header(&mut out, results);
    scenarios(&mut out, results);
    ladder(&mut out, results);
    seeds(&mut out, results);
    scrapes(&mut out, results);
    starts(&mut out, results);
    logs(&mut out, results);
    cross_checks(&mut out, results);
    prices(&mut out, results);
    targets(&mut out, results);
    notes(&mut out, results);
    out
}

fn header(out: &mut String, results: &Results) {
    let m = &results.machine;
    let c = &results.config;
    let _ = writeln!(
        out,
        "hero-bench {}  (code: {})",
        results.stamp, results.revision
    );
    let _ = writeln!(
        out,
        "machine: {} × {}, {} MiB, Linux {}; load average before {} / after {} (the run's own)",
        m.cpus, m.cpu_model, m.memory_mib, m.kernel, m.loadavg_before, m.loadavg_after
    );
    let sink = if c.log_sink == "file" {
        "a file"
    } else {
        "/dev/null"
    };
    let _ = writeln!(
        out,
        "method: closed loop, {} HTTP/1.1 keep-alive connections, {} s warm-up then {} s \
         measured per scenario;\n        server pinned to CPU {} and load generator to CPU {} \
         (taskset); server stdout to {sink}",
        c.concurrency, c.warmup_s, c.duration_s, c.server_cpu, c.client_cpu,
    );
    let _ = writeln!(
        out,
        "hero-host and like-for-like wasmtime serve: {}",
        c.settings
    );
}

fn scenarios(out: &mut String, results: &Results) {
    const COLUMNS: &[Column] = &[
        left("contender", LABEL),
        right("req/s", 10),
        right("p50 ms", 9),
        right("p99 ms", 9),
        right("p99.9 ms", 9),
        right("errors", 8),
        right("peak RSS", 9),
        right("× req/s", 8),
        right("× p99", 8),
    ];
    let mut titles: Vec<&str> = Vec::new();
    for row in &results.rows {
        if !titles.contains(&row.title.as_str()) {
            titles.push(&row.title);
        }
    }
    for title in titles {
        let rows: Vec<&Row> = results.rows.iter().filter(|r| r.title == title).collect();
        table(
            out,
            title,
            COLUMNS,
            rows.iter().map(|row| {
                let l = &row.load.latency;
                vec![
                    row.label.clone(),
                    format!("{:.1}", row.load.rps),
                    format!("{:.3}", l.p50_ms),
                    format!("{:.3}", l.p99_ms),
                    format!("{:.3}", l.p999_ms),
                    row.errors().to_string(),
                    format!("{:.1} MiB", row.peak_rss_mib),
                    ratio(row.rps_ratio),
                    ratio(row.p99_ratio),
                ]
            }),
        );
        let reference = rows.iter().find(|r| r.reference).map_or("—", |r| &r.label);
        let _ = writeln!(out, "  (ratios relative to {reference})");
    }
}

fn ratio(value: Option<f64>) -> String {
    value.map_or("—".into(), |r| format!("{r:.2}"))
}

/// An optional figure to one decimal, with its unit; a dash when absent.
fn or_dash(value: Option<f64>, unit: &str) -> String {
    value.map_or("—".into(), |v| format!("{v:.1}{unit}"))
}

fn ladder(out: &mut String, results: &Results) {
    let hello = |key| results.row(Scenario::Hello, key);
    let steps: Vec<_> = LADDER
        .iter()
        .filter_map(|(what, from, to)| Some((what, hello(from)?, hello(to)?)))
        .collect();
    table(
        out,
        "what each step costs on hello (cost = 1 − req/s after ÷ req/s before)",
        &[
            left("step", LABEL),
            right("req/s from", 10),
            right("req/s to", 10),
            right("cost", 8),
            right("p99 ms from", 11),
            right("p99 ms to", 11),
        ],
        steps.into_iter().map(|(what, from, to)| {
            vec![
                what.to_string(),
                format!("{:.1}", from.load.rps),
                format!("{:.1}", to.load.rps),
                format!("{:.1}%", (1.0 - to.load.rps / from.load.rps) * 100.0),
                format!("{:.3}", from.load.latency.p99_ms),
                format!("{:.3}", to.load.latency.p99_ms),
            ]
        }),
    );
}

fn seeds(out: &mut String, results: &Results) {
    table(
        out,
        format_args!(
            "seeding (POST /heroes, {} connections)",
            results.config.concurrency
        ),
        &[
            left("contender", LABEL),
            right("stored", 10),
            right("seconds", 9),
            right("heroes/s", 10),
            right("errors", 8),
        ],
        results.seeds.iter().map(|seed| {
            let r = &seed.report;
            vec![
                seed.label.clone(),
                seed.stored.to_string(),
                format!("{:.1}", r.seconds),
                format!("{:.0}", r.created as f64 / r.seconds),
                r.errors.to_string(),
            ]
        }),
    );
}

fn scrapes(out: &mut String, results: &Results) {
    let c = &results.config;
    table(
        out,
        format_args!(
            "/metrics scrape latency while the public port is saturated ({} scrapes, {} ms apart)",
            c.scrapes, c.scrape_interval_ms
        ),
        &[
            left("contender", LABEL),
            left("load", 18),
            right("p50 ms", 8),
            right("p99 ms", 8),
            right("max ms", 8),
            right("errors", 6),
            right("body KiB", 8),
            right("load req/s", 10),
            right("load p99", 9),
        ],
        results.scrapes.iter().map(|s| {
            let l = &s.scrape.latency;
            vec![
                s.label.clone(),
                s.scenario.to_string(),
                format!("{:.3}", l.p50_ms),
                format!("{:.3}", l.p99_ms),
                format!("{:.3}", l.max_ms),
                s.scrape.errors.to_string(),
                format!("{:.1}", s.scrape.body_bytes as f64 / 1024.0),
                format!("{:.1}", s.load_rps),
                format!("{:.3}", s.load_p99_ms),
            ]
        }),
    );
}

fn starts(out: &mut String, results: &Results) {
    let printed = table(
        out,
        "start-up (process start to first 200 on GET /) and idle memory",
        &[
            left("contender", LABEL),
            right("first ms", 12),
            right("restart ms", 14),
            right("restart min", 14),
            right("idle RSS", 12),
            right("idle RSS rest.", 14),
        ],
        results.starts.iter().map(|s| {
            vec![
                s.label.clone(),
                format!("{:.1}", s.first_ms),
                or_dash(s.restart_ms, ""),
                or_dash(s.restart_min_ms, ""),
                format!("{:.1} MiB", s.idle_rss_first_mib),
                or_dash(s.idle_rss_restart_mib, " MiB"),
            ]
        }),
    );
    if printed {
        let _ = writeln!(
            out,
            "  (first start of hero-host: empty state dir, so the component is compiled; \
             restarts: median of several, with the compiled cache)"
        );
    }
}

fn logs(out: &mut String, results: &Results) {
    table(
        out,
        "server stdout over all its scenarios",
        &[
            left("contender", LABEL),
            right("lines", 10),
            right("MiB", 9),
            right("warn", 8),
            right("error", 8),
            right("not JSON", 9),
        ],
        results.logs.iter().map(|l| {
            vec![
                l.label.clone(),
                l.lines.to_string(),
                format!("{:.1}", l.bytes as f64 / (1024.0 * 1024.0)),
                l.warn.to_string(),
                l.error.to_string(),
                l.not_json.to_string(),
            ]
        }),
    );
}

/// One column of a table: its head, its width, and the side its cells keep to.
#[derive(Clone, Copy)]
struct Column {
    head: &'static str,
    width: usize,
    left: bool,
}

const fn left(head: &'static str, width: usize) -> Column {
    Column {
        head,
        width,
        left: true,
    }
}

const fn right(head: &'static str, width: usize) -> Column {
    Column {
        head,
        width,
        left: false,
    }
}

/// Prints a table, unless it has no rows: a blank line, its title, the column
/// heads, then a line a row, each cell padded to its column's width. Whether
/// it printed.
fn table(
    out: &mut String,
    title: impl std::fmt::Display,
    columns: &[Column],
    rows: impl IntoIterator<Item = Vec<String>>,
) -> bool {
    let mut rows = rows.into_iter().peekable();
    if rows.peek().is_none() {
        return false;
    }
    let _ = writeln!(out, "\n{title}");
    let line = |out: &mut String, cells: &mut dyn Iterator<Item = &str>| {
        out.push(' ');
        for (cell, column) in cells.zip(columns) {
            let width = column.width;
            let _ = if column.left {
                write!(out, " {cell:<width$}")
            } else {
                write!(out, " {cell:>width$}")
            };
        }
        out.push('\n');
    };
    line(out, &mut columns.iter().map(|c| c.head));
    for row in rows {
        line(out, &mut row.iter().map(String::as_str));
    }
    true
}

fn cross_checks(out: &mut String, results: &Results) {
    if results.cross_checks.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "\ncross-check of GET / with another load generator (same cores, same connections)"
    );
    for x in &results.cross_checks {
        let ours = results
            .row(Scenario::Hello, &x.contender)
            .map_or(0.0, |r| r.load.rps);
        let _ = writeln!(
            out,
            "  {:<LABEL$} {}: {:.1} req/s, p50 {:.3} ms, p99 {:.3} ms ({:.2}× hero-bench's {:.1} req/s)",
            x.label,
            x.tool,
            x.rps,
            x.p50_ms,
            x.p99_ms,
            x.rps / ours,
            ours
        );
    }
}

fn prices(out: &mut String, results: &Results) {
    if results.prices.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "\nfeatures priced in interleaved rounds: with and without, both up, loaded in turns \
         of {:.0} ms (A B B A …) for {:.1} s each (cost = 1 − with ÷ without)",
        results.config.price_turn_s * 1e3,
        results.config.price_slice_s
    );
    for price in &results.prices {
        let name = format!("{}: {}", price.scenario.short(), price.what);
        let rounds: Vec<String> = price
            .rounds
            .iter()
            .map(|r| format!("{:.0}/{:.0} {:.1}%", r.on_rps, r.off_rps, r.cost * 100.0))
            .collect();
        match (price.median_cost, price.median_p99_ratio) {
            (Some(median), Some(p99)) => {
                let _ = writeln!(
                    out,
                    "  {:<LABEL$} median {:>5.1}%, p99 {:.2}× without's   rounds (with/without req/s): {}",
                    name,
                    median * 100.0,
                    p99,
                    rounds.join(", ")
                );
            }
            _ => {
                let _ = writeln!(out, "  {name:<LABEL$} not measured");
            }
        }
        if let Some(note) = &price.note {
            let _ = writeln!(out, "  {:<LABEL$} ({note})", "");
        }
    }
}

fn targets(out: &mut String, results: &Results) {
    if results.targets.is_empty() {
        return;
    }
    let _ = writeln!(out, "\ntargets (issue: what)");
    for t in &results.targets {
        let met = match t.met {
            Some(true) => "met",
            Some(false) => "NOT met",
            None => "",
        };
        let what = format!("{:>2}: {}", t.issue, t.what);
        let _ = writeln!(out, "  {what:<66} {:>9} {:>14}  {met}", t.goal, t.measured);
    }
}

fn notes(out: &mut String, results: &Results) {
    let _ = writeln!(out, "\nnotes");
    for row in results.rows.iter().filter(|r| r.errors() > 0) {
        let _ = writeln!(
            out,
            "  {} / {}: statuses {:?}, transport errors {} {:?}",
            row.title,
            row.label,
            row.load.statuses,
            row.load.transport_errors,
            row.load.error_samples
        );
    }
    for note in &results.notes {
        let _ = writeln!(out, "  {note}");
    }
    for (key, text) in &results.stderr {
        let alarming: Vec<&str> = text
            .lines()
            .filter(|l| {
                let l = l.to_ascii_lowercase();
                ["error", "panic", "warn"].iter().any(|w| l.contains(w))
            })
            .collect();
        if !alarming.is_empty() {
            let _ = writeln!(out, "  {key} stderr: {alarming:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::Target;
    use crate::results::tests::{row, with_rows};

    #[test]
    fn the_ladder_prices_each_step_from_the_hello_rows() {
        let results = with_rows(vec![
            row(Scenario::Hello, "hello-wasmtime", 10_000.0, 4.0, 30.0),
            row(Scenario::Hello, "hello-wasmtime-like", 8_000.0, 5.0, 30.0),
            row(Scenario::Hello, "hello-hero-host-off", 8_400.0, 4.8, 24.0),
            row(Scenario::Hello, "hello-hero-host", 7_560.0, 5.2, 24.0),
        ]);
        let text = render(&results);
        let line = |start: &str| {
            text.lines()
                .find(|l| l.trim_start().starts_with(start))
                .unwrap_or_else(|| panic!("no {start:?} in\n{text}"))
                .to_owned()
        };
        assert!(line("Spin's guarantees").contains("20.0%"), "{text}");
        assert!(line("hero-host's runtime").contains("-5.0%"), "{text}");
        assert!(line("telemetry (metrics").contains("10.0%"), "{text}");
        assert!(line("all of it").contains("24.4%"), "{text}");
    }

    #[test]
    fn a_table_pads_each_cell_to_its_column_and_an_empty_one_prints_nothing() {
        let columns = [left("name", 6), right("n", 4)];
        let mut out = String::new();
        assert!(!table(
            &mut out,
            "empty",
            &columns,
            Vec::<Vec<String>>::new()
        ));
        assert_eq!(out, "");
        let rows = vec![vec!["ab".to_owned(), "7".to_owned()]];
        assert!(table(&mut out, "title", &columns, rows));
        assert_eq!(out, "\ntitle\n  name      n\n  ab        7\n");
    }

    #[test]
    fn targets_show_their_issue_and_verdict() {
        let results = Results {
            targets: vec![Target {
                issue: 12,
                what: "POST /heroes (durable): req/s ÷ FastAPI (in memory)".into(),
                goal: "≥ 2.5×".into(),
                measured: "2.10×".into(),
                met: Some(false),
            }],
            ..Results::default()
        };
        let text = render(&results);
        let line = text.lines().find(|l| l.contains("POST /heroes")).unwrap();
        assert!(line.starts_with("  12: POST"), "{line}");
        assert!(line.ends_with("NOT met"), "{line}");
    }
}
