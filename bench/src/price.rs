//! A feature priced in interleaved rounds: the server with it and the server
//! without it both up, loaded in short turns (A B B A …), so the machine's
//! drift falls on both sides alike.

use serde::Serialize;

use crate::scenario::Scenario;

/// What the telemetry-on and telemetry-off rounds price.
pub const INSTRUMENTATION: &str = "instrumentation";
/// What the rounds with and without OTLP trace export price.
pub const TRACING: &str = "tracing, 10% sampled";
/// What hero-host (telemetry on) costs over `wasmtime serve` with the same
/// guarantees, on hello: hero-host is the "with" side.
pub const OVER_LIKE_FOR_LIKE: &str = "hero-host over like-for-like wasmtime serve";
/// What hero-host (telemetry on) costs over plain `wasmtime serve`, on hello.
pub const OVER_PLAIN: &str = "hero-host over plain wasmtime serve";
/// hero-host (telemetry on) reading one hero against plain `wasmtime serve`
/// saying hello: two scenarios, one round; the "with" side is hero-host.
pub const GET_OVER_PLAIN_HELLO: &str = "hero-host GET /heroes/{id} over plain wasmtime serve hello";
/// What hero-host (as shipped) costs over the FastAPI app, on the registry:
/// negative when it is faster (−200% is three times as fast).
pub const OVER_FASTAPI: &str = "hero-host over FastAPI";

/// What one side of a round measured.
#[derive(Debug, Clone, Copy)]
pub struct Side {
    /// Requests per second.
    pub rps: f64,
    /// The 99th percentile latency, ms.
    pub p99_ms: f64,
}

/// One round of an interleaved with/without measurement.
#[derive(Debug, Clone, Serialize)]
pub struct PriceRound {
    /// With the feature, req/s.
    pub on_rps: f64,
    /// Without it, req/s.
    pub off_rps: f64,
    /// 1 − on ÷ off.
    pub cost: f64,
    /// With the feature, p99 in ms.
    pub on_p99_ms: f64,
    /// Without it, p99 in ms.
    pub off_p99_ms: f64,
}

impl PriceRound {
    /// A round from what its two sides measured.
    pub fn new(on: Side, off: Side) -> Self {
        PriceRound {
            on_rps: on.rps,
            off_rps: off.rps,
            cost: 1.0 - on.rps / off.rps,
            on_p99_ms: on.p99_ms,
            off_p99_ms: off.p99_ms,
        }
    }

    /// With ÷ without p99.
    pub fn p99_ratio(&self) -> f64 {
        self.on_p99_ms / self.off_p99_ms
    }

    /// A round of two throughputs and equal p99s, for tests of what is
    /// made of throughputs.
    #[cfg(test)]
    pub fn of_rps(on_rps: f64, off_rps: f64) -> Self {
        let side = |rps| Side { rps, p99_ms: 1.0 };
        PriceRound::new(side(on_rps), side(off_rps))
    }
}

/// The price of one feature in one scenario, over several rounds.
#[derive(Debug, Serialize)]
pub struct PriceRow {
    /// The feature priced (`instrumentation`, `tracing, 10% sampled`).
    pub what: String,
    /// Scenario key.
    pub scenario: Scenario,
    /// The contender with the feature.
    pub on_label: String,
    /// The contender without it.
    pub off_label: String,
    /// Every round, in order (none when skipped).
    pub rounds: Vec<PriceRound>,
    /// The median round's cost (the upper median for an even count).
    pub median_cost: Option<f64>,
    /// The median of the rounds' with ÷ without p99 (the upper median for
    /// an even count): both sides of a ratio measured within seconds of
    /// each other, so that the machine's drift does not decide it.
    pub median_p99_ratio: Option<f64>,
    /// Whether the rounds priced the feature: false when skipped, or when
    /// the feature turned out not to be on in the "with" server.
    pub priced: bool,
    /// What the reader must know: why it was skipped, why the rounds price
    /// nothing, or what the feature did meanwhile.
    pub note: Option<String>,
}

impl PriceRow {
    /// The row for `rounds` of `what` in `scenario`.
    pub fn new(
        what: &str,
        scenario: Scenario,
        labels: (&str, &str),
        rounds: Vec<PriceRound>,
    ) -> Self {
        PriceRow {
            what: what.into(),
            scenario,
            on_label: labels.0.into(),
            off_label: labels.1.into(),
            median_cost: median(rounds.iter().map(|r| r.cost)),
            median_p99_ratio: median(rounds.iter().map(PriceRound::p99_ratio)),
            priced: !rounds.is_empty(),
            rounds,
            note: None,
        }
    }

    /// A row that was not measured, saying why.
    pub fn skipped(what: &str, scenario: Scenario, labels: (&str, &str), why: String) -> Self {
        PriceRow {
            note: Some(why),
            ..PriceRow::new(what, scenario, labels, Vec::new())
        }
    }

    /// The median cost, when the rounds priced the feature.
    pub fn cost(&self) -> Option<f64> {
        self.median_cost.filter(|_| self.priced)
    }

    /// The median with ÷ without p99, when the rounds priced the feature.
    pub fn p99_ratio(&self) -> Option<f64> {
        self.median_p99_ratio.filter(|_| self.priced)
    }

    /// Marks the rounds as pricing nothing, saying why.
    pub fn void(&mut self, why: String) {
        self.priced = false;
        self.note = Some(why);
    }
}

/// The upper median of `values`, if any.
fn median(values: impl Iterator<Item = f64>) -> Option<f64> {
    let mut values: Vec<f64> = values.collect();
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_price_is_the_median_round() {
        let rounds = [
            (9_000.0, 10_000.0),
            (9_800.0, 10_000.0),
            (9_520.0, 10_000.0),
        ]
        .map(|(on, off)| PriceRound::of_rps(on, off))
        .to_vec();
        let price = PriceRow::new("instrumentation", Scenario::Hello, ("on", "off"), rounds);
        let median = price.cost().unwrap();
        assert!((median - 0.048).abs() < 1e-9, "{median}");
    }

    #[test]
    fn the_upper_median_of_an_even_count() {
        let rounds = [0.9, 0.8, 0.95, 0.85]
            .map(|on| PriceRound::of_rps(on, 1.0))
            .to_vec();
        let price = PriceRow::new("x", Scenario::GetHero, ("on", "off"), rounds);
        assert!((price.cost().unwrap() - 0.15).abs() < 1e-9);
    }

    #[test]
    fn a_skipped_or_void_row_prices_nothing() {
        let skipped = PriceRow::skipped("tracing", Scenario::GetHero, ("on", "off"), "no".into());
        assert_eq!((skipped.median_cost, skipped.cost()), (None, None));
        let mut noted = PriceRow::new(
            "tracing",
            Scenario::GetHero,
            ("on", "off"),
            vec![PriceRound::of_rps(1.0, 1.0)],
        );
        noted.void("the sink received nothing".into());
        assert_eq!((noted.cost(), noted.p99_ratio()), (None, None));
        assert_eq!(noted.median_cost, Some(0.0));
    }

    #[test]
    fn the_p99_ratio_is_the_median_of_the_rounds_ratios() {
        // The middle p99s of each side (12 and 10) are from different
        // rounds, and their ratio (1.2) is no round's: the median is taken
        // over each round's own ratio (0.8, 1.5, 1.1).
        let side = |rps, p99_ms| Side { rps, p99_ms };
        let rounds = [(8.0, 10.0), (15.0, 10.0), (12.0, 10.9)]
            .map(|(on, off)| PriceRound::new(side(9_000.0, on), side(10_000.0, off)))
            .to_vec();
        let price = PriceRow::new("x", Scenario::Hello, ("on", "off"), rounds);
        let ratio = price.p99_ratio().unwrap();
        assert!((ratio - 12.0 / 10.9).abs() < 1e-9, "{ratio}");
    }
}
