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
    let mut titles: Vec<&str> = Vec::new();
    for row in &results.rows {
        if !titles.contains(&row.title.as_str()) {
            titles.push(&row.title);
        }
    }
    for title in titles {
        let rows: Vec<&Row> = results.rows.iter().filter(|r| r.title == title).collect();
        section(
            out,
            title,
            format_args!(
                "{:<LABEL$} {:>10} {:>9} {:>9} {:>9} {:>8} {:>9} {:>8} {:>8}",
                "contender",
                "req/s",
                "p50 ms",
                "p99 ms",
                "p99.9 ms",
                "errors",
                "peak RSS",
                "× req/s",
                "× p99"
            ),
        );
        for row in &rows {
            let l = &row.load.latency;
            let _ = writeln!(
                out,
                "  {:<LABEL$} {:>10.1} {:>9.3} {:>9.3} {:>9.3} {:>8} {:>5.1} MiB {:>8} {:>8}",
                row.label,
                row.load.rps,
                l.p50_ms,
                l.p99_ms,
                l.p999_ms,
                row.errors(),
                row.peak_rss_mib,
                ratio(row.rps_ratio),
                ratio(row.p99_ratio),
            );
        }
        let reference = rows.iter().find(|r| r.reference).map_or("—", |r| &r.label);
        let _ = writeln!(out, "  (ratios relative to {reference})");
    }
}

fn ratio(value: Option<f64>) -> String {
    value.map_or("—".into(), |r| format!("{r:.2}"))
}

fn ladder(out: &mut String, results: &Results) {
    let hello = |key| results.row(Scenario::Hello, key);
    let steps: Vec<_> = LADDER
        .iter()
        .filter_map(|(what, from, to)| Some((what, hello(from)?, hello(to)?)))
        .collect();
    if steps.is_empty() {
        return;
    }
    section(
        out,
        "what each step costs on hello (cost = 1 − req/s after ÷ req/s before)",
        format_args!(
            "{:<LABEL$} {:>10} {:>10} {:>8} {:>11} {:>11}",
            "step", "req/s from", "req/s to", "cost", "p99 ms from", "p99 ms to"
        ),
    );
    for (what, from, to) in steps {
        let _ = writeln!(
            out,
            "  {:<LABEL$} {:>10.1} {:>10.1} {:>7.1}% {:>11.3} {:>11.3}",
            what,
            from.load.rps,
            to.load.rps,
            (1.0 - to.load.rps / from.load.rps) * 100.0,
            from.load.latency.p99_ms,
            to.load.latency.p99_ms,
        );
    }
}

fn seeds(out: &mut String, results: &Results) {
    if results.seeds.is_empty() {
        return;
    }
    section(
        out,
        format_args!(
            "seeding (POST /heroes, {} connections)",
            results.config.concurrency
        ),
        format_args!(
            "{:<LABEL$} {:>10} {:>9} {:>10} {:>8}",
            "contender", "stored", "seconds", "heroes/s", "errors"
        ),
    );
    for seed in &results.seeds {
        let r = &seed.report;
        let _ = writeln!(
            out,
            "  {:<LABEL$} {:>10} {:>9.1} {:>10.0} {:>8}",
            seed.label,
            seed.stored,
            r.seconds,
            r.created as f64 / r.seconds,
            r.errors
        );
    }
}

fn scrapes(out: &mut String, results: &Results) {
    if results.scrapes.is_empty() {
        return;
    }
    let c = &results.config;
    section(
        out,
        format_args!(
            "/metrics scrape latency while the public port is saturated ({} scrapes, {} ms apart)",
            c.scrapes, c.scrape_interval_ms
        ),
        format_args!(
            "{:<LABEL$} {:<18} {:>8} {:>8} {:>8} {:>6} {:>8} {:>10} {:>9}",
            "contender",
            "load",
            "p50 ms",
            "p99 ms",
            "max ms",
            "errors",
            "body KiB",
            "load req/s",
            "load p99"
        ),
    );
    for s in &results.scrapes {
        let l = &s.scrape.latency;
        let _ = writeln!(
            out,
            "  {:<LABEL$} {:<18} {:>8.3} {:>8.3} {:>8.3} {:>6} {:>8.1} {:>10.1} {:>9.3}",
            s.label,
            s.scenario,
            l.p50_ms,
            l.p99_ms,
            l.max_ms,
            s.scrape.errors,
            s.scrape.body_bytes as f64 / 1024.0,
            s.load_rps,
            s.load_p99_ms
        );
    }
}

/// A table's title line after a blank line, then its column heads, indented
/// like its rows.
fn section(out: &mut String, title: impl std::fmt::Display, columns: std::fmt::Arguments<'_>) {
    let _ = writeln!(out, "\n{title}\n  {columns}");
}

fn starts(out: &mut String, results: &Results) {
    if results.starts.is_empty() {
        return;
    }
    section(
        out,
        "start-up (process start to first 200 on GET /) and idle memory",
        format_args!(
            "{:<LABEL$} {:>12} {:>14} {:>14} {:>12} {:>14}",
            "contender", "first ms", "restart ms", "restart min", "idle RSS", "idle RSS rest."
        ),
    );
    let or_dash = |v: Option<f64>, unit: &str| v.map_or("—".into(), |v| format!("{v:.1}{unit}"));
    for s in &results.starts {
        let _ = writeln!(
            out,
            "  {:<LABEL$} {:>12.1} {:>14} {:>14} {:>8.1} MiB {:>14}",
            s.label,
            s.first_ms,
            or_dash(s.restart_ms, ""),
            or_dash(s.restart_min_ms, ""),
            s.idle_rss_first_mib,
            or_dash(s.idle_rss_restart_mib, " MiB"),
        );
    }
    let _ = writeln!(
        out,
        "  (first start of hero-host: empty state dir, so the component is compiled; \
         restarts: median of several, with the compiled cache)"
    );
}

fn logs(out: &mut String, results: &Results) {
    if results.logs.is_empty() {
        return;
    }
    section(
        out,
        "server stdout over all its scenarios",
        format_args!(
            "{:<LABEL$} {:>10} {:>9} {:>8} {:>8} {:>9}",
            "contender", "lines", "MiB", "warn", "error", "not JSON"
        ),
    );
    for l in &results.logs {
        let _ = writeln!(
            out,
            "  {:<LABEL$} {:>10} {:>9.1} {:>8} {:>8} {:>9}",
            l.label,
            l.lines,
            l.bytes as f64 / (1024.0 * 1024.0),
            l.warn,
            l.error,
            l.not_json
        );
    }
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
        "\nfeatures priced in interleaved rounds: with and without, both up, loaded in turn \
         (cost = 1 − with ÷ without)"
    );
    for price in &results.prices {
        let name = format!("{}: {}", price.scenario.short(), price.what);
        let rounds: Vec<String> = price
            .rounds
            .iter()
            .map(|r| format!("{:.0}/{:.0} {:.1}%", r.on_rps, r.off_rps, r.cost * 100.0))
            .collect();
        match price.median_cost {
            Some(median) => {
                let _ = writeln!(
                    out,
                    "  {:<LABEL$} median {:>5.1}%   rounds (with/without req/s): {}",
                    name,
                    median * 100.0,
                    rounds.join(", ")
                );
            }
            None => {
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
