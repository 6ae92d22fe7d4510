//! Everything one run measured, as plain records: kept as JSON for later
//! comparison, rendered by `report`, judged by `targets`.

use serde::Serialize;

use crate::load::{LoadReport, ScrapeReport, SeedReport};
use crate::log_count::LogRow;
use crate::machine::Machine;
use crate::price::PriceRow;
use crate::scenario::Scenario;

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
    /// Seeding, per contender and store size.
    pub seeds: Vec<SeedRow>,
    /// The end of each server's stderr, when it wrote any.
    pub stderr: Vec<(String, String)>,
    /// The same load measured by another tool.
    pub cross_checks: Vec<CrossCheck>,
    /// Features priced by interleaved with/without rounds.
    pub prices: Vec<PriceRow>,
    /// The issues' targets, measured.
    pub targets: Vec<Target>,
}

/// How the run was made.
#[derive(Debug, Default, Serialize)]
pub struct Config {
    /// Measured seconds per scenario.
    pub duration_s: f64,
    /// Warm-up seconds per scenario.
    pub warmup_s: f64,
    /// Measured seconds of each side in one interleaved pricing round.
    pub price_slice_s: f64,
    /// Seconds of one turn within a pricing round.
    pub price_turn_s: f64,
    /// Connections.
    pub concurrency: usize,
    /// Heroes stored before the registry scenarios.
    pub seed_count: usize,
    /// Heroes stored for the second list scenario.
    pub large_seed_count: usize,
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
    /// Timeout and instance reuse given to hero-host and the like-for-like
    /// `wasmtime serve`.
    pub settings: String,
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
    pub fn new(
        scenario: Scenario,
        contender: &str,
        label: &str,
        reference: bool,
        load: LoadReport,
        peak_rss_mib: f64,
        rss_end_mib: f64,
    ) -> Self {
        Row {
            scenario,
            title: scenario.title(),
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

    /// Non-2xx answers and transport failures.
    pub fn errors(&self) -> u64 {
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

/// One seeding of one contender's store.
#[derive(Debug, Serialize)]
pub struct SeedRow {
    /// Contender name.
    pub label: String,
    /// Heroes stored once it was done.
    pub stored: usize,
    /// What it did.
    pub report: SeedReport,
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

/// One target and what this run measured for it.
#[derive(Debug, Serialize)]
pub struct Target {
    /// The issue that set it.
    pub issue: u32,
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
    /// The row of `contender` in `scenario`.
    pub fn row(&self, scenario: Scenario, contender: &str) -> Option<&Row> {
        self.rows
            .iter()
            .find(|r| r.scenario == scenario && r.contender == contender)
    }

    /// Fills in each row's ratios to the reference row of its scenario.
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
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::load::Latency;

    /// A row of `rps` req/s with the given p99 and peak RSS.
    pub(crate) fn row(scenario: Scenario, key: &str, rps: f64, p99_ms: f64, rss: f64) -> Row {
        let load = LoadReport {
            rps,
            latency: Latency {
                p99_ms,
                ..Latency::default()
            },
            ..LoadReport::default()
        };
        Row::new(
            scenario,
            key,
            key,
            key == "hero-host" || key == "hello-hero-host",
            load,
            rss,
            rss,
        )
    }

    /// Results holding only `rows`.
    pub(crate) fn with_rows(rows: Vec<Row>) -> Results {
        Results {
            rows,
            ..Results::default()
        }
    }

    #[test]
    fn ratios_are_to_the_reference_row_of_the_same_scenario() {
        let mut results = with_rows(vec![
            row(Scenario::Hello, "hello-hero-host", 10_000.0, 2.0, 20.0),
            row(Scenario::Hello, "hello-wasmtime", 12_500.0, 1.0, 20.0),
            row(Scenario::GetHero, "hero-host", 5_000.0, 4.0, 20.0),
            row(Scenario::GetHero, "fastapi", 1_000.0, 40.0, 20.0),
        ]);
        results.finish();
        let wasmtime = results.row(Scenario::Hello, "hello-wasmtime").unwrap();
        assert_eq!(
            (wasmtime.rps_ratio, wasmtime.p99_ratio),
            (Some(1.25), Some(0.5))
        );
        let fastapi = results.row(Scenario::GetHero, "fastapi").unwrap();
        assert_eq!(
            (fastapi.rps_ratio, fastapi.p99_ratio),
            (Some(0.2), Some(10.0))
        );
    }
}
