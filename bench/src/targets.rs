//! The targets the issues set, judged on one run's results: ratios between
//! rows of the same run, never absolute speeds.

use crate::results::{Results, Target};
use crate::scenario::Scenario::{self, GetHero, Hello, List, PostHero};

/// What a target asks of its measurement.
#[derive(Debug, Clone, Copy)]
enum Goal {
    AtLeast(f64),
    AtMost(f64),
    /// Shown, not judged.
    Report,
}

/// How a measurement is shown.
#[derive(Debug, Clone, Copy)]
enum Unit {
    /// A ratio, `1.25×`.
    Times,
    /// A fraction shown in per cent, `4.8%`.
    Percent,
    Ms,
    MiB,
}

impl Unit {
    /// `value` as a goal (`goal`: ratios to one decimal, the rest whole) or
    /// as a measurement (one more decimal).
    fn show(self, value: f64, goal: bool) -> String {
        match (self, goal) {
            (Unit::Times, true) => format!("{value:.1}×"),
            (Unit::Times, false) => format!("{value:.2}×"),
            (Unit::Percent, true) => format!("{:.0}%", value * 100.0),
            (Unit::Percent, false) => format!("{:.1}%", value * 100.0),
            (Unit::Ms, true) => format!("{value:.0} ms"),
            (Unit::Ms, false) => format!("{value:.1} ms"),
            (Unit::MiB, true) => format!("{value:.0} MiB"),
            (Unit::MiB, false) => format!("{value:.1} MiB"),
        }
    }
}

/// Where a ratio comes from.
#[derive(Debug, Clone, Copy)]
enum How {
    /// The median of interleaved rounds.
    MedianRound,
    /// Rows measured one after the other.
    OneShot,
}

impl std::fmt::Display for How {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            How::MedianRound => "median round",
            How::OneShot => "one shot",
        })
    }
}

/// Collects targets in the order they are shown.
struct Targets<'a> {
    results: &'a Results,
    list: Vec<Target>,
}

impl Targets<'_> {
    fn push(&mut self, issue: u32, what: &str, goal: Goal, unit: Unit, value: Option<f64>) {
        let (goal_text, met) = match goal {
            Goal::AtLeast(limit) => (
                format!("≥ {}", unit.show(limit, true)),
                value.map(|v| v >= limit),
            ),
            Goal::AtMost(limit) => (
                format!("≤ {}", unit.show(limit, true)),
                value.map(|v| v <= limit),
            ),
            Goal::Report => ("(report)".to_owned(), None),
        };
        self.list.push(Target {
            issue,
            what: what.into(),
            goal: goal_text,
            measured: value.map_or("not measured".into(), |v| unit.show(v, false)),
            met,
        });
    }

    fn rps(&self, scenario: Scenario, contender: &str) -> Option<f64> {
        self.results.row(scenario, contender).map(|r| r.load.rps)
    }

    fn p99(&self, scenario: Scenario, contender: &str) -> Option<f64> {
        self.results
            .row(scenario, contender)
            .map(|r| r.load.latency.p99_ms)
    }

    fn peak_rss(&self, scenario: Scenario, contender: &str) -> Option<f64> {
        self.results
            .row(scenario, contender)
            .map(|r| r.peak_rss_mib)
    }

    /// `on` ÷ `off` req/s, each side a (scenario, contender) row: the median
    /// round of `what` (priced in the scenario of `on`) when its rounds ran,
    /// else the one-shot rows; with which it is.
    fn ratio(&self, what: &str, on: (Scenario, &str), off: (Scenario, &str)) -> (How, Option<f64>) {
        match self.price(what, on.0) {
            Some(cost) => (How::MedianRound, Some(1.0 - cost)),
            None => (
                How::OneShot,
                div(self.rps(on.0, on.1), self.rps(off.0, off.1)),
            ),
        }
    }

    /// Pushes "`title`, how": `on` ÷ `off` req/s at least `goal`, from the
    /// rounds that priced `what` when they ran (see [`Targets::ratio`]).
    fn push_ratio(
        &mut self,
        issue: u32,
        title: &str,
        what: &str,
        (on, off): ((Scenario, &str), (Scenario, &str)),
        goal: f64,
    ) {
        let (how, value) = self.ratio(what, on, off);
        let title = format!("{title}, {how}");
        self.push(issue, &title, Goal::AtLeast(goal), Unit::Times, value);
    }

    /// `on` ÷ `off` p99 in `scenario` at most `goal`: the median round of
    /// `what` when its rounds ran, else the one-shot rows.
    fn push_p99_ratio(
        &mut self,
        issue: u32,
        title: &str,
        (what, scenario): (&str, Scenario),
        (on, off): ((Scenario, &str), (Scenario, &str)),
        goal: f64,
    ) {
        let rounds = self
            .priced(what, scenario)
            .and_then(crate::price::PriceRow::p99_ratio);
        let (how, value) = match rounds {
            Some(ratio) => (How::MedianRound, Some(ratio)),
            None => (
                How::OneShot,
                div(self.p99(on.0, on.1), self.p99(off.0, off.1)),
            ),
        };
        let title = format!("{title}, {how}");
        self.push(issue, &title, Goal::AtMost(goal), Unit::Times, value);
    }

    /// The rounds that priced `what` in `scenario`, if they ran.
    fn priced(&self, what: &str, scenario: Scenario) -> Option<&crate::price::PriceRow> {
        self.results
            .prices
            .iter()
            .find(|p| p.what == what && p.scenario == scenario)
    }

    /// The median price of `what` in `scenario`, when its rounds priced it.
    fn price(&self, what: &str, scenario: Scenario) -> Option<f64> {
        self.priced(what, scenario).and_then(|p| p.cost())
    }
}

fn div(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    Some(a? / b?)
}

/// Every target, judged on `results` (rows, prices, starts and scrapes).
pub fn evaluate(results: &Results) -> Vec<Target> {
    let mut t = Targets {
        results,
        list: Vec::new(),
    };
    issue_11(&mut t);
    issue_12(&mut t);
    issue_14(&mut t);
    issue_7(&mut t);
    t.list
}

/// Concurrent reuse: the runtime against `wasmtime serve`, plain and like for
/// like, and the registry against FastAPI.
fn issue_11(t: &mut Targets<'_>) {
    use crate::price::{GET_OVER_PLAIN_HELLO, OVER_FASTAPI, OVER_LIKE_FOR_LIKE, OVER_PLAIN};
    use Goal::AtMost;
    let on = "hello-hero-host";
    // The interleaved rounds when they ran, else the one-shot rows.
    let pairs = [
        (
            OVER_LIKE_FOR_LIKE,
            "hello-wasmtime-like",
            "like-for-like",
            1.0,
        ),
        (OVER_PLAIN, "hello-wasmtime", "plain", 0.8),
    ];
    for (what, against, wasmtime, goal) in pairs {
        let title = format!("hello, telemetry on: req/s ÷ {wasmtime} wasmtime serve");
        t.push_ratio(11, &title, what, ((Hello, on), (Hello, against)), goal);
    }
    t.push_p99_ratio(
        11,
        "hello, telemetry on: p99 ÷ like-for-like p99",
        (OVER_LIKE_FOR_LIKE, Hello),
        ((Hello, on), (Hello, "hello-wasmtime-like")),
        1.0,
    );
    let title = "GET /heroes/{id}: req/s ÷ FastAPI";
    t.push_ratio(
        11,
        title,
        OVER_FASTAPI,
        ((GetHero, "hero-host"), (GetHero, "fastapi")),
        4.0,
    );
    t.push_p99_ratio(
        11,
        "GET /heroes/{id}: p99 ÷ FastAPI p99",
        (OVER_FASTAPI, GetHero),
        ((GetHero, "hero-host"), (GetHero, "fastapi")),
        0.1,
    );
    t.push_ratio(
        11,
        "GET /heroes/{id}: req/s ÷ plain wasmtime serve on hello",
        GET_OVER_PLAIN_HELLO,
        ((GetHero, "hero-host"), (Hello, "hello-wasmtime")),
        0.6,
    );
    let value = div(t.peak_rss(Hello, on), t.peak_rss(Hello, "hello-wasmtime"));
    t.push(
        11,
        "hello: peak RSS under load ÷ wasmtime serve's",
        AtMost(1.0),
        Unit::Times,
        value,
    );
    instrumentation(
        t,
        11,
        GetHero,
        "GET /heroes/{id}",
        ("hero-host", "hero-host-off"),
        AtMost(0.05),
    );
}

/// The instrumentation's price in `scenario`: the interleaved rounds when they
/// ran, else the one-shot rows.
fn instrumentation(
    t: &mut Targets<'_>,
    issue: u32,
    scenario: Scenario,
    name: &str,
    keys: (&str, &str),
    goal: Goal,
) {
    let sides = ((scenario, keys.0), (scenario, keys.1));
    let (how, ratio) = t.ratio(crate::price::INSTRUMENTATION, sides.0, sides.1);
    let what = match how {
        How::MedianRound => format!("{name}: instrumentation cost, median round"),
        How::OneShot => format!("{name}: instrumentation cost, 1 − on ÷ off (one shot)"),
    };
    t.push(issue, &what, goal, Unit::Percent, ratio.map(|r| 1.0 - r));
}

/// The data model: a list costs what its page costs.
fn issue_12(t: &mut Targets<'_>) {
    use crate::price::OVER_FASTAPI;
    let config = &t.results.config;
    let small = List {
        stored: config.seed_count,
    };
    let large = List {
        stored: config.large_seed_count,
    };
    let registry = ("hero-host", "fastapi");
    let title = format!(
        "GET /heroes?limit=100 at {}: req/s ÷ FastAPI",
        config.seed_count
    );
    let registry_in = |scenario| ((scenario, registry.0), (scenario, registry.1));
    t.push_ratio(12, &title, OVER_FASTAPI, registry_in(small), 3.0);
    let what = format!(
        "GET /heroes?limit=100 at {} ÷ at {}",
        config.large_seed_count, config.seed_count
    );
    let value = div(t.rps(large, "hero-host"), t.rps(small, "hero-host"));
    t.push(12, &what, Goal::AtLeast(0.8), Unit::Times, value);
    let title = "POST /heroes (durable): req/s ÷ FastAPI (in memory)";
    t.push_ratio(12, title, OVER_FASTAPI, registry_in(PostHero), 2.5);
}

/// Traces: sampled tracing priced on the single-hero read.
fn issue_14(t: &mut Targets<'_>) {
    let value = t.price(crate::price::TRACING, GetHero);
    t.push(
        14,
        "GET /heroes/{id}: tracing (10% sampled) cost, median round",
        Goal::AtMost(0.05),
        Unit::Percent,
        value,
    );
}

/// The first benchmark's absolute targets, still held, and what is reported.
fn issue_7(t: &mut Targets<'_>) {
    let scrape = t
        .results
        .scrapes
        .iter()
        .find(|s| s.contender == "hero-host")
        .map(|s| s.scrape.latency.p99_ms);
    t.push(
        7,
        "/metrics scrape p99 under saturation",
        Goal::AtMost(10.0),
        Unit::Ms,
        scrape,
    );
    let start = t.results.starts.iter().find(|s| s.contender == "hero-host");
    let restart = [
        (
            "start to first 200, compiled cache (registry)",
            Goal::AtMost(100.0),
            Unit::Ms,
            start.and_then(|s| s.restart_ms),
        ),
        (
            "idle RSS (registry, restart with cache)",
            Goal::AtMost(40.0),
            Unit::MiB,
            start.and_then(|s| s.idle_rss_restart_mib),
        ),
    ];
    for (what, goal, unit, value) in restart {
        t.push(7, what, goal, unit, value);
    }
    instrumentation(
        t,
        7,
        Hello,
        "hello",
        ("hello-hero-host", "hello-hero-host-off"),
        Goal::Report,
    );
    let value = div(t.rps(Hello, "hello-hero-host"), t.rps(Hello, "hello-hyper"));
    t.push(
        7,
        "hello, telemetry on: req/s ÷ bare hyper",
        Goal::Report,
        Unit::Times,
        value,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::price::{PriceRound, PriceRow};
    use crate::results::tests::{row, with_rows};
    use crate::results::{Config, ScrapeRow};

    fn results() -> Results {
        Results {
            config: Config {
                seed_count: 10_000,
                large_seed_count: 100_000,
                ..Config::default()
            },
            ..with_rows(vec![
                row(Hello, "hello-wasmtime", 12_000.0, 4.0, 30.0),
                row(Hello, "hello-wasmtime-like", 9_000.0, 5.0, 30.0),
                row(Hello, "hello-hero-host", 9_900.0, 4.5, 24.0),
                row(GetHero, "hero-host", 7_800.0, 5.0, 40.0),
                row(GetHero, "fastapi", 1_500.0, 60.0, 60.0),
                row(List { stored: 10_000 }, "hero-host", 4_000.0, 9.0, 40.0),
                row(List { stored: 10_000 }, "fastapi", 1_000.0, 40.0, 40.0),
                row(List { stored: 100_000 }, "hero-host", 3_000.0, 12.0, 40.0),
                row(PostHero, "hero-host", 2_000.0, 20.0, 40.0),
                row(PostHero, "fastapi", 1_000.0, 40.0, 40.0),
            ])
        }
    }

    /// The targets once `what` is priced in `scenario` by three rounds of
    /// `on` req/s each against 10,000 without.
    fn priced(results: &mut Results, what: &str, scenario: Scenario, on: [f64; 3]) -> Vec<Target> {
        let rounds = on.map(|on| PriceRound::of_rps(on, 10_000.0)).to_vec();
        let row = PriceRow::new(what, scenario, ("on", "off"), rounds);
        results.prices.push(row);
        evaluate(results)
    }

    /// Asserts each `(what, measured, met)`: the target whose title is
    /// exactly `what` measured `measured` and was judged `met`.
    fn assert_judged(targets: &[Target], expected: &[(&str, &str, bool)]) {
        for &(what, measured, met) in expected {
            let target = find(targets, what);
            assert_eq!(
                (target.what.as_str(), target.measured.as_str(), target.met),
                (what, measured, Some(met))
            );
        }
    }

    fn find<'a>(targets: &'a [Target], what: &str) -> &'a Target {
        targets
            .iter()
            .find(|t| t.what.starts_with(what))
            .unwrap_or_else(|| panic!("no target {what:?} in {targets:#?}"))
    }

    #[test]
    fn the_single_hero_read_over_fastapi_uses_its_median_round() {
        use crate::price::OVER_FASTAPI;
        let on = [45_000.0, 38_000.0, 50_000.0];
        let targets = priced(&mut results(), OVER_FASTAPI, GetHero, on);
        let get = find(&targets, "GET /heroes/{id}: req/s ÷ FastAPI");
        assert_eq!(
            (get.what.as_str(), get.measured.as_str(), get.met),
            (
                "GET /heroes/{id}: req/s ÷ FastAPI, median round",
                "4.50×",
                Some(true)
            )
        );
    }

    #[test]
    fn hello_is_judged_against_both_wasmtime_contenders() {
        let targets = evaluate(&results());
        let like = find(&targets, "hello, telemetry on: req/s ÷ like-for-like");
        assert_eq!((like.measured.as_str(), like.met), ("1.10×", Some(true)));
        let plain = find(&targets, "hello, telemetry on: req/s ÷ plain");
        assert_eq!((plain.measured.as_str(), plain.met), ("0.82×", Some(true)));
        assert!(like.what.ends_with("one shot"), "{}", like.what);
        let p99 = find(&targets, "hello, telemetry on: p99");
        assert_eq!((p99.goal.as_str(), p99.met), ("≤ 1.0×", Some(true)));
        let rss = find(&targets, "hello: peak RSS");
        assert_eq!((rss.measured.as_str(), rss.met), ("0.80×", Some(true)));
        assert_eq!(like.issue, 11);
    }

    #[test]
    fn ratios_priced_in_rounds_use_the_median_round_the_others_one_shot() {
        use crate::price::{OVER_FASTAPI, OVER_LIKE_FOR_LIKE};
        let mut results = results();
        let on = [9_000.0, 10_500.0, 9_800.0];
        priced(&mut results, OVER_LIKE_FOR_LIKE, Hello, on);
        let on = [30_000.0, 25_000.0, 35_000.0];
        let targets = priced(&mut results, OVER_FASTAPI, List { stored: 10_000 }, on);
        assert_judged(
            &targets,
            &[
                (
                    "hello, telemetry on: req/s ÷ like-for-like wasmtime serve, median round",
                    "0.98×",
                    false,
                ),
                (
                    "GET /heroes?limit=100 at 10000: req/s ÷ FastAPI, median round",
                    "3.00×",
                    true,
                ),
            ],
        );
        let one_shot = [
            "hello, telemetry on: req/s ÷ plain",
            "GET /heroes/{id}: req/s",
            "POST /heroes",
        ];
        for what in one_shot {
            let target = find(&targets, what);
            assert!(target.what.ends_with("one shot"), "{}", target.what);
        }
    }

    #[test]
    fn p99s_and_the_read_against_hello_come_from_rounds_when_they_ran() {
        use crate::price::{GET_OVER_PLAIN_HELLO, OVER_FASTAPI, OVER_LIKE_FOR_LIKE, Side};
        let mut results = results();
        // Each round: (with req/s, with p99, without p99), without at
        // 10,000 req/s. The one-shot rows would say otherwise.
        let mut push = |what: &str, scenario, rounds: [(f64, f64, f64); 3]| {
            let rounds = rounds
                .map(|(rps, on, off)| {
                    let with = Side { rps, p99_ms: on };
                    PriceRound::new(
                        with,
                        Side {
                            rps: 10_000.0,
                            p99_ms: off,
                        },
                    )
                })
                .to_vec();
            let row = PriceRow::new(what, scenario, ("on", "off"), rounds);
            results.prices.push(row);
        };
        let like = [
            (9_000.0, 9.0, 10.0),
            (9_000.0, 12.0, 10.0),
            (9_000.0, 10.5, 10.0),
        ];
        push(OVER_LIKE_FOR_LIKE, Hello, like);
        let fastapi = [
            (40_000.0, 5.0, 40.0),
            (40_000.0, 4.0, 50.0),
            (40_000.0, 5.0, 60.0),
        ];
        push(OVER_FASTAPI, GetHero, fastapi);
        let hello = [
            (5_500.0, 1.0, 1.0),
            (6_400.0, 1.0, 1.0),
            (7_000.0, 1.0, 1.0),
        ];
        push(GET_OVER_PLAIN_HELLO, GetHero, hello);
        let targets = evaluate(&results);
        assert_judged(
            &targets,
            &[
                (
                    "hello, telemetry on: p99 ÷ like-for-like p99, median round",
                    "1.05×",
                    false,
                ),
                (
                    "GET /heroes/{id}: p99 ÷ FastAPI p99, median round",
                    "0.08×",
                    true,
                ),
                (
                    "GET /heroes/{id}: req/s ÷ plain wasmtime serve on hello, median round",
                    "0.64×",
                    true,
                ),
            ],
        );
    }

    #[test]
    fn the_registry_is_judged_against_fastapi_and_its_own_small_store() {
        let targets = evaluate(&results());
        let get = find(&targets, "GET /heroes/{id}: req/s ÷ FastAPI");
        assert_eq!(
            (get.goal.as_str(), get.measured.as_str(), get.met),
            ("≥ 4.0×", "5.20×", Some(true))
        );
        let p99 = find(&targets, "GET /heroes/{id}: p99 ÷ FastAPI");
        assert_eq!((p99.measured.as_str(), p99.met), ("0.08×", Some(true)));
        let floor = find(&targets, "GET /heroes/{id}: req/s ÷ plain wasmtime");
        assert_eq!((floor.measured.as_str(), floor.met), ("0.65×", Some(true)));
        let list = find(&targets, "GET /heroes?limit=100 at 10000: req/s ÷ FastAPI");
        assert_eq!(
            (list.measured.as_str(), list.met, list.issue),
            ("4.00×", Some(true), 12)
        );
        let growth = find(&targets, "GET /heroes?limit=100 at 100000 ÷ at 10000");
        assert_eq!(
            (growth.measured.as_str(), growth.met),
            ("0.75×", Some(false))
        );
        let post = find(&targets, "POST /heroes");
        assert_eq!((post.goal.as_str(), post.met), ("≥ 2.5×", Some(false)));
    }

    #[test]
    fn the_instrumentation_uses_the_median_round_when_there_is_one() {
        let mut results = results();
        let one_shot = evaluate(&results);
        let cost = find(
            &one_shot,
            "GET /heroes/{id}: instrumentation cost, 1 − on ÷ off",
        );
        assert_eq!((cost.measured.as_str(), cost.met), ("not measured", None));

        let on = [9_600.0, 9_000.0, 9_700.0];
        let targets = priced(&mut results, crate::price::INSTRUMENTATION, GetHero, on);
        let cost = find(
            &targets,
            "GET /heroes/{id}: instrumentation cost, median round",
        );
        assert_eq!(
            (cost.goal.as_str(), cost.measured.as_str(), cost.met),
            ("≤ 5%", "4.0%", Some(true))
        );
    }

    #[test]
    fn tracing_that_exported_nothing_is_not_measured() {
        let mut results = results();
        let mut row = PriceRow::new(
            crate::price::TRACING,
            GetHero,
            ("on", "off"),
            vec![PriceRound::of_rps(1.0, 1.0)],
        );
        row.void("the sink received nothing".into());
        results.prices.push(row);
        let targets = evaluate(&results);
        let tracing = find(&targets, "GET /heroes/{id}: tracing");
        assert_eq!(
            (tracing.measured.as_str(), tracing.met, tracing.issue),
            ("not measured", None, 14)
        );
    }

    #[test]
    fn absolute_targets_read_the_scrapes_and_starts() {
        let mut results = results();
        results.scrapes.push(ScrapeRow {
            contender: "hero-host".into(),
            label: "hero-host".into(),
            scenario: "GET /heroes/{id}".into(),
            scrape: crate::load::ScrapeReport {
                latency: crate::load::Latency {
                    p99_ms: 12.5,
                    ..Default::default()
                },
                ..Default::default()
            },
            load_rps: 1.0,
            load_p99_ms: 1.0,
        });
        let targets = evaluate(&results);
        let scrape = find(&targets, "/metrics scrape p99");
        assert_eq!(
            (scrape.measured.as_str(), scrape.met),
            ("12.5 ms", Some(false))
        );
    }
}
