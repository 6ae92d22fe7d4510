//! The results of a run: kept as JSON for later comparison, printed as tables,
//! and checked against the targets of issue 7.

use std::fmt::Write as _;
use std::io::BufRead;
use std::path::Path;

use serde::Serialize;

use crate::load::{LoadReport, ScrapeReport, SeedReport};
use crate::run::Scenario;

/// Everything one run measured.
#[derive(Debug, Default, Serialize)]
pub struct Results {
    /// Name of the run.
    pub stamp: String,
    /// The code measured.
    pub revision: String,
    /// Where.
    pub machine: Machine,
    /// How.
    pub config: Config,
    /// Anything the reader must know (skipped contenders, caveats).
    pub notes: Vec<String>,
    /// One row per scenario and contender.
    pub rows: Vec<Row>,
    /// `/metrics` latency under load.
    pub scrapes: Vec<ScrapeRow>,
    /// Start-up time and idle memory.
    pub starts: Vec<StartRow>,
    /// What the servers logged.
    pub logs: Vec<LogRow>,
    /// Seeding, per contender.
    pub seeds: Vec<(String, SeedReport)>,
    /// The end of each server's stderr, when it wrote any.
    pub stderr: Vec<(String, String)>,
    /// The same load measured by another tool.
    pub cross_checks: Vec<CrossCheck>,
    /// Instrumentation priced by interleaved on/off rounds.
    pub prices: Vec<PriceRow>,
    /// Issue 7's targets, measured.
    pub targets: Vec<Target>,
}

/// One round of the interleaved on/off measurement.
#[derive(Debug, Clone, Serialize)]
pub struct PriceRound {
    /// Telemetry on, req/s.
    pub on_rps: f64,
    /// Telemetry off, req/s.
    pub off_rps: f64,
    /// 1 − on ÷ off.
    pub cost: f64,
}

impl PriceRound {
    /// A round from its two throughputs.
    pub fn new(on_rps: f64, off_rps: f64) -> Self {
        PriceRound {
            on_rps,
            off_rps,
            cost: 1.0 - on_rps / off_rps,
        }
    }
}

/// The price of the instrumentation in one scenario, over several rounds.
#[derive(Debug, Serialize)]
pub struct PriceRow {
    /// Scenario key.
    pub scenario: Scenario,
    /// The telemetry-on contender.
    pub label: String,
    /// Every round, in order.
    pub rounds: Vec<PriceRound>,
    /// The median round's cost (the upper median for an even count).
    pub median_cost: f64,
}

impl PriceRow {
    /// The row for `rounds` (at least one).
    pub fn new(scenario: Scenario, label: &str, rounds: Vec<PriceRound>) -> Self {
        let mut costs: Vec<f64> = rounds.iter().map(|r| r.cost).collect();
        costs.sort_by(f64::total_cmp);
        PriceRow {
            scenario,
            label: label.into(),
            median_cost: costs.get(costs.len() / 2).copied().unwrap_or(f64::NAN),
            rounds,
        }
    }
}

/// One scenario measured again with another load generator (wrk).
#[derive(Debug, Clone, Default, Serialize)]
pub struct CrossCheck {
    /// Contender key.
    pub contender: String,
    /// Contender name.
    pub label: String,
    /// The tool and its settings.
    pub tool: String,
    /// Requests per second.
    pub rps: f64,
    /// Median latency.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
}

/// The machine.
#[derive(Debug, Default, Serialize)]
pub struct Machine {
    /// Logical CPUs.
    pub cpus: usize,
    /// `model name` of /proc/cpuinfo.
    pub cpu_model: String,
    /// Kernel release.
    pub kernel: String,
    /// Total memory, MiB.
    pub memory_mib: u64,
    /// /proc/loadavg when the run started.
    pub loadavg_before: String,
    /// /proc/loadavg when it ended.
    pub loadavg_after: String,
}

impl Machine {
    /// Reads /proc.
    pub fn probe() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        Machine {
            cpus: cpuinfo
                .lines()
                .filter(|l| l.starts_with("processor"))
                .count(),
            cpu_model: cpuinfo
                .lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).trim().to_owned())
                .unwrap_or_default(),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim()
                .to_owned(),
            memory_mib: meminfo
                .lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .map_or(0, |kib| kib / 1024),
            loadavg_before: loadavg(),
            loadavg_after: String::new(),
        }
    }
}

/// The first three fields of /proc/loadavg.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// How the run was made.
#[derive(Debug, Default, Serialize)]
pub struct Config {
    /// Measured seconds per scenario.
    pub duration_s: f64,
    /// Warm-up seconds per scenario.
    pub warmup_s: f64,
    /// Connections.
    pub concurrency: usize,
    /// Heroes stored before the registry scenarios.
    pub seed_count: usize,
    /// Scrapes measured.
    pub scrapes: usize,
    /// Pause between scrapes.
    pub scrape_interval_ms: f64,
    /// Server's cores.
    pub server_cpu: String,
    /// Load generator's cores.
    pub client_cpu: String,
    /// Where server stdout went.
    pub log_sink: String,
    /// The load generator.
    pub load_generator: String,
}

/// One scenario on one contender.
#[derive(Debug, Serialize)]
pub struct Row {
    /// Scenario key.
    pub scenario: Scenario,
    /// Scenario heading.
    pub title: String,
    /// Contender key.
    pub contender: String,
    /// Contender name.
    pub label: String,
    /// Whether the other rows of this scenario are compared with this one.
    pub reference: bool,
    /// What the load generator measured.
    pub load: LoadReport,
    /// Peak resident memory of the server during the scenario, MiB.
    pub peak_rss_mib: f64,
    /// Resident memory at its end, MiB.
    pub rss_end_mib: f64,
    /// req/s relative to the reference row.
    pub rps_ratio: Option<f64>,
    /// p99 relative to the reference row.
    pub p99_ratio: Option<f64>,
}

impl Row {
    /// A row, ratios filled in by [`Results::finish`].
    #[expect(clippy::too_many_arguments, reason = "a plain record")]
    pub fn new(
        scenario: Scenario,
        title: String,
        contender: &str,
        label: &str,
        reference: bool,
        load: LoadReport,
        peak_rss_mib: f64,
        rss_end_mib: f64,
    ) -> Self {
        Row {
            scenario,
            title,
            contender: contender.into(),
            label: label.into(),
            reference,
            load,
            peak_rss_mib,
            rss_end_mib,
            rps_ratio: None,
            p99_ratio: None,
        }
    }

    fn errors(&self) -> u64 {
        self.load.non_2xx + self.load.transport_errors
    }
}

/// `/metrics` latency while the public port is saturated.
#[derive(Debug, Serialize)]
pub struct ScrapeRow {
    /// Contender key.
    pub contender: String,
    /// Contender name.
    pub label: String,
    /// The load beside the scrapes.
    pub scenario: String,
    /// Scrape latency.
    pub scrape: ScrapeReport,
    /// Throughput of the load meanwhile.
    pub load_rps: f64,
    /// Its p99.
    pub load_p99_ms: f64,
}

/// Start-up and idle memory of one contender.
#[derive(Debug, Serialize)]
pub struct StartRow {
    /// Contender key.
    pub contender: String,
    /// Contender name.
    pub label: String,
    /// Process start to first 200, first start, ms.
    pub first_ms: f64,
    /// What the first start had to do.
    pub first_note: String,
    /// Median over the restarts (hero-host: with the compiled cache), ms.
    pub restart_ms: Option<f64>,
    /// Fastest restart, ms.
    pub restart_min_ms: Option<f64>,
    /// RSS one second after the first start answered, MiB.
    pub idle_rss_first_mib: f64,
    /// RSS one second after a restart answered, MiB.
    pub idle_rss_restart_mib: Option<f64>,
}

/// What a server wrote to stdout over all its scenarios.
#[derive(Debug, Default, Serialize)]
pub struct LogRow {
    /// Contender key.
    pub contender: String,
    /// Contender name.
    pub label: String,
    /// Lines.
    pub lines: u64,
    /// Bytes.
    pub bytes: u64,
    /// Lines at level warn (warning).
    pub warn: u64,
    /// Lines at level error (or critical).
    pub error: u64,
    /// Lines that are not JSON objects.
    pub not_json: u64,
}

impl LogRow {
    /// Counts the lines of a log file.
    pub fn count(contender: &str, label: &str, path: &Path) -> Self {
        #[derive(serde::Deserialize)]
        struct Line {
            level: Option<String>,
            levelname: Option<String>,
        }
        let mut row = LogRow {
            contender: contender.into(),
            label: label.into(),
            ..LogRow::default()
        };
        let Ok(file) = std::fs::File::open(path) else {
            return row;
        };
        for line in std::io::BufReader::new(file).split(b'\n') {
            let Ok(line) = line else { break };
            row.lines += 1;
            row.bytes += line.len() as u64 + 1;
            match serde_json::from_slice::<Line>(&line) {
                Ok(parsed) => {
                    let level = parsed.level.or(parsed.levelname).unwrap_or_default();
                    match level.to_ascii_lowercase().as_str() {
                        "warn" | "warning" => row.warn += 1,
                        "error" | "critical" => row.error += 1,
                        _ => {}
                    }
                }
                Err(_) => row.not_json += 1,
            }
        }
        row
    }
}

/// One target of issue 7 and what this run measured for it.
#[derive(Debug, Serialize)]
pub struct Target {
    /// What is compared.
    pub what: String,
    /// The goal.
    pub goal: String,
    /// The measurement, formatted.
    pub measured: String,
    /// Whether it was met (`None` when there is no goal or no measurement).
    pub met: Option<bool>,
}

impl Results {
    fn row(&self, scenario: Scenario, contender: &str) -> Option<&Row> {
        self.rows
            .iter()
            .find(|r| r.scenario == scenario && r.contender == contender)
    }

    /// Fills in ratios and targets.
    pub fn finish(&mut self) {
        let references: Vec<(Scenario, f64, f64)> = self
            .rows
            .iter()
            .filter(|r| r.reference)
            .map(|r| (r.scenario, r.load.rps, r.load.latency.p99_ms))
            .collect();
        for row in &mut self.rows {
            if let Some((_, rps, p99)) = references.iter().find(|(s, ..)| *s == row.scenario) {
                row.rps_ratio = Some(row.load.rps / rps);
                row.p99_ratio = Some(row.load.latency.p99_ms / p99);
            }
        }
        self.targets = self.targets();
    }

    fn targets(&self) -> Vec<Target> {
        let mut targets = Vec::new();
        let mut ratio = |what: &str, goal: &str, value: Option<f64>, met: fn(f64) -> bool| {
            // Costs are fractions, shown as percentages; the rest are ratios.
            let percent = goal.ends_with('%');
            targets.push(Target {
                what: what.into(),
                goal: goal.into(),
                measured: value.map_or("not measured".into(), |v| {
                    if percent {
                        format!("{:.1}%", v * 100.0)
                    } else {
                        format!("{v:.2}×")
                    }
                }),
                met: value.map(met),
            });
        };
        let rps = |s, c| self.row(s, c).map(|r| r.load.rps);
        let p99 = |s, c| self.row(s, c).map(|r| r.load.latency.p99_ms);
        let div = |a: Option<f64>, b: Option<f64>| Some(a? / b?);
        use Scenario::*;

        ratio(
            "hello: hero-host (telemetry on) req/s ÷ wasmtime serve",
            "≥ 1.0×",
            div(rps(Hello, "hello-hero-host"), rps(Hello, "hello-wasmtime")),
            |v| v >= 1.0,
        );
        ratio(
            "hello: hero-host p99 ÷ wasmtime serve p99",
            "≤ 1.0×",
            div(p99(Hello, "hello-hero-host"), p99(Hello, "hello-wasmtime")),
            |v| v <= 1.0,
        );
        for (scenario, name, on, off) in [
            (GetHero, "GET /heroes/{id}", "hero-host", "hero-host-off"),
            (PostHero, "POST /heroes", "hero-host", "hero-host-off"),
            (Hello, "hello", "hello-hero-host", "hello-hero-host-off"),
        ] {
            // The interleaved rounds when they ran; else the one-shot rows.
            match self.prices.iter().find(|p| p.scenario == scenario) {
                Some(price) => ratio(
                    &format!(
                        "{name}: instrumentation cost, median of {} rounds",
                        price.rounds.len()
                    ),
                    "≤ 5%",
                    Some(price.median_cost),
                    |v| v <= 0.05,
                ),
                None => ratio(
                    &format!("{name}: instrumentation cost, 1 − on ÷ off (req/s)"),
                    "≤ 5%",
                    div(rps(scenario, on), rps(scenario, off)).map(|r| 1.0 - r),
                    |v| v <= 0.05,
                ),
            }
        }
        ratio(
            "GET /heroes/{id} req/s ÷ wasmtime serve on hello",
            "≥ 0.7×",
            div(rps(GetHero, "hero-host"), rps(Hello, "hello-wasmtime")),
            |v| v >= 0.7,
        );
        ratio(
            "GET /heroes/{id} req/s ÷ FastAPI",
            "≥ 10×",
            div(rps(GetHero, "hero-host"), rps(GetHero, "fastapi")),
            |v| v >= 10.0,
        );
        ratio(
            "GET /heroes/{id} p99 ÷ FastAPI p99",
            "< 0.1×",
            div(p99(GetHero, "hero-host"), p99(GetHero, "fastapi")),
            |v| v < 0.1,
        );
        ratio(
            "POST /heroes (durable) req/s ÷ FastAPI (in memory)",
            "≥ 5×",
            div(rps(PostHero, "hero-host"), rps(PostHero, "fastapi")),
            |v| v >= 5.0,
        );
        ratio(
            "hello: hero-host (telemetry on) req/s ÷ bare hyper",
            "(report)",
            div(rps(Hello, "hello-hero-host"), rps(Hello, "hello-hyper")),
            |_| true,
        );
        targets.last_mut().expect("just pushed").met = None;

        let mut absolute = |what: &str, goal: &str, value: Option<f64>, unit: &str, limit: f64| {
            targets.push(Target {
                what: what.into(),
                goal: goal.into(),
                measured: value.map_or("not measured".into(), |v| format!("{v:.1} {unit}")),
                met: value.map(|v| v <= limit),
            });
        };
        let scrape = self
            .scrapes
            .iter()
            .find(|s| s.contender == "hero-host")
            .map(|s| s.scrape.latency.p99_ms);
        absolute(
            "/metrics scrape p99 under saturation",
            "≤ 10 ms",
            scrape,
            "ms",
            10.0,
        );
        let start = self.starts.iter().find(|s| s.contender == "hero-host");
        absolute(
            "start to first 200, compiled cache (registry)",
            "≤ 100 ms",
            start.and_then(|s| s.restart_ms),
            "ms",
            100.0,
        );
        absolute(
            "idle RSS (registry, restart with cache)",
            "≤ 40 MiB",
            start.and_then(|s| s.idle_rss_restart_mib),
            "MiB",
            40.0,
        );
        targets
    }

    /// The tables, as printed.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let m = &self.machine;
        let c = &self.config;
        let _ = writeln!(out, "hero-bench {}  (code: {})", self.stamp, self.revision);
        let _ = writeln!(
            out,
            "machine: {} × {}, {} MiB, Linux {}; load average before {} / after {} (the run's own)",
            m.cpus, m.cpu_model, m.memory_mib, m.kernel, m.loadavg_before, m.loadavg_after
        );
        let _ = writeln!(
            out,
            "method: closed loop, {} HTTP/1.1 keep-alive connections, {} s warm-up then {} s \
             measured per scenario;\n        server pinned to CPU {} and load generator to CPU {} \
             (taskset); server stdout to {}",
            c.concurrency,
            c.warmup_s,
            c.duration_s,
            c.server_cpu,
            c.client_cpu,
            if c.log_sink == "file" {
                "a file"
            } else {
                "/dev/null"
            }
        );

        let mut titles: Vec<&str> = Vec::new();
        for row in &self.rows {
            if !titles.contains(&row.title.as_str()) {
                titles.push(&row.title);
            }
        }
        for title in titles {
            let rows: Vec<&Row> = self.rows.iter().filter(|r| r.title == title).collect();
            let reference = rows
                .iter()
                .find(|r| r.reference)
                .map_or("—".to_owned(), |r| r.label.clone());
            let _ = writeln!(out, "\n{title}");
            let _ = writeln!(
                out,
                "  {:<40} {:>10} {:>9} {:>9} {:>9} {:>8} {:>9} {:>8} {:>8}",
                "contender",
                "req/s",
                "p50 ms",
                "p99 ms",
                "p99.9 ms",
                "errors",
                "peak RSS",
                "× req/s",
                "× p99"
            );
            for row in rows {
                let l = &row.load.latency;
                let _ = writeln!(
                    out,
                    "  {:<40} {:>10.1} {:>9.3} {:>9.3} {:>9.3} {:>8} {:>5.1} MiB {:>8} {:>8}",
                    row.label,
                    row.load.rps,
                    l.p50_ms,
                    l.p99_ms,
                    l.p999_ms,
                    row.errors(),
                    row.peak_rss_mib,
                    row.rps_ratio.map_or("—".into(), |r| format!("{r:.2}")),
                    row.p99_ratio.map_or("—".into(), |r| format!("{r:.2}")),
                );
            }
            let _ = writeln!(out, "  (ratios relative to {reference})");
        }

        if !self.scrapes.is_empty() {
            let _ = writeln!(
                out,
                "\n/metrics scrape latency while the public port is saturated ({} scrapes, {} ms apart)",
                c.scrapes, c.scrape_interval_ms
            );
            let _ = writeln!(
                out,
                "  {:<40} {:<18} {:>8} {:>8} {:>8} {:>6} {:>8} {:>10} {:>9}",
                "contender",
                "load",
                "p50 ms",
                "p99 ms",
                "max ms",
                "errors",
                "body KiB",
                "load req/s",
                "load p99"
            );
            for s in &self.scrapes {
                let _ = writeln!(
                    out,
                    "  {:<40} {:<18} {:>8.3} {:>8.3} {:>8.3} {:>6} {:>8.1} {:>10.1} {:>9.3}",
                    s.label,
                    s.scenario,
                    s.scrape.latency.p50_ms,
                    s.scrape.latency.p99_ms,
                    s.scrape.latency.max_ms,
                    s.scrape.errors,
                    s.scrape.body_bytes as f64 / 1024.0,
                    s.load_rps,
                    s.load_p99_ms
                );
            }
        }

        if !self.starts.is_empty() {
            let _ = writeln!(
                out,
                "\nstart-up (process start to first 200 on GET /) and idle memory"
            );
            let _ = writeln!(
                out,
                "  {:<40} {:>12} {:>14} {:>14} {:>12} {:>14}",
                "contender", "first ms", "restart ms", "restart min", "idle RSS", "idle RSS rest."
            );
            for s in &self.starts {
                let _ = writeln!(
                    out,
                    "  {:<40} {:>12.1} {:>14} {:>14} {:>8.1} MiB {:>14}",
                    s.label,
                    s.first_ms,
                    s.restart_ms.map_or("—".into(), |v| format!("{v:.1}")),
                    s.restart_min_ms.map_or("—".into(), |v| format!("{v:.1}")),
                    s.idle_rss_first_mib,
                    s.idle_rss_restart_mib
                        .map_or("—".into(), |v| format!("{v:.1} MiB")),
                );
            }
            let _ = writeln!(
                out,
                "  (first start of hero-host: empty state dir, so the component is compiled; \
                 restarts: median of several, with the compiled cache)"
            );
        }

        if !self.logs.is_empty() {
            let _ = writeln!(out, "\nserver stdout over all its scenarios");
            let _ = writeln!(
                out,
                "  {:<40} {:>10} {:>9} {:>8} {:>8} {:>9}",
                "contender", "lines", "MiB", "warn", "error", "not JSON"
            );
            for l in &self.logs {
                let _ = writeln!(
                    out,
                    "  {:<40} {:>10} {:>9.1} {:>8} {:>8} {:>9}",
                    l.label,
                    l.lines,
                    l.bytes as f64 / (1024.0 * 1024.0),
                    l.warn,
                    l.error,
                    l.not_json
                );
            }
        }

        if !self.cross_checks.is_empty() {
            let _ = writeln!(
                out,
                "\ncross-check of GET / with another load generator (same cores, same connections)"
            );
            for x in &self.cross_checks {
                let ours = self
                    .rows
                    .iter()
                    .find(|r| r.contender == x.contender && r.scenario == Scenario::Hello)
                    .map_or(0.0, |r| r.load.rps);
                let _ = writeln!(
                    out,
                    "  {:<40} {}: {:.1} req/s, p50 {:.3} ms, p99 {:.3} ms ({:.2}× hero-bench's {:.1} req/s)",
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

        if !self.prices.is_empty() {
            let _ = writeln!(
                out,
                "\ninstrumentation price: telemetry on vs off, both up, interleaved rounds \
                 (cost = 1 − on ÷ off)"
            );
            for price in &self.prices {
                let rounds: Vec<String> = price
                    .rounds
                    .iter()
                    .map(|r| format!("{:.0}/{:.0} {:.1}%", r.on_rps, r.off_rps, r.cost * 100.0))
                    .collect();
                let _ = writeln!(
                    out,
                    "  {:<18} median {:>5.1}%   rounds (on/off req/s): {}",
                    price.scenario.short(),
                    price.median_cost * 100.0,
                    rounds.join(", ")
                );
            }
        }

        if !self.targets.is_empty() {
            let _ = writeln!(out, "\ntargets of issue 7");
            for t in &self.targets {
                let met = match t.met {
                    Some(true) => "met",
                    Some(false) => "NOT met",
                    None => "",
                };
                let _ = writeln!(
                    out,
                    "  {:<58} {:>9} {:>14}  {}",
                    t.what, t.goal, t.measured, met
                );
            }
        }

        let errors: Vec<&Row> = self.rows.iter().filter(|r| r.errors() > 0).collect();
        let _ = writeln!(out, "\nnotes");
        for row in errors {
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
        for note in &self.notes {
            let _ = writeln!(out, "  {note}");
        }
        for (key, text) in &self.stderr {
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
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_price_is_the_median_round_and_feeds_the_target() {
        let rounds = [
            (9_000.0, 10_000.0),
            (9_800.0, 10_000.0),
            (9_520.0, 10_000.0),
        ]
        .map(|(on, off)| PriceRound::new(on, off))
        .to_vec();
        let price = PriceRow::new(Scenario::Hello, "hero-host hello-p3", rounds);
        assert!(
            (price.median_cost - 0.048).abs() < 1e-9,
            "{}",
            price.median_cost
        );

        let mut results = Results {
            prices: vec![price],
            ..Results::default()
        };
        results.finish();
        let target = results
            .targets
            .iter()
            .find(|t| t.what.starts_with("hello: instrumentation cost"))
            .unwrap();
        assert_eq!(
            (target.what.as_str(), target.measured.as_str(), target.met),
            (
                "hello: instrumentation cost, median of 3 rounds",
                "4.8%",
                Some(true)
            )
        );
        assert!(results.render().contains("9000/10000 10.0%"));
    }
}
