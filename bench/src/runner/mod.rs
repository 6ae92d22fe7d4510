//! Measuring one contender: a first start from empty, its scenarios in order
//! (hello's on a second start, from the compiled cache), restarts, then what
//! it wrote; and pricing a feature in interleaved rounds.

mod pricing;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;

use crate::client::Client;
use crate::contender::{Contender, Serves};
use crate::log_count::LogRow;
use crate::results::{CrossCheck, Results, Row, ScrapeRow, SeedRow, StartRow};
use crate::run::RunArgs;
use crate::scenario::{self, Scenario, Step};
use crate::server::{self, Launch, Server};

/// How long a server may take to answer its first 200 (a cold compile of the
/// registry on a busy core takes seconds).
const START_TIMEOUT: Duration = Duration::from_secs(180);
/// How long a server may take to exit after SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(15);
/// Settling time before idle memory is read.
const IDLE_SETTLE: Duration = Duration::from_secs(1);

/// Measures contenders and prices features.
pub struct Runner<'a> {
    /// The run's settings.
    pub args: &'a RunArgs,
    /// The load generator.
    pub client: Client,
    /// Where logs, ids and state go.
    pub scratch: &'a Path,
}

/// A contender's store while its scenarios run.
struct Store {
    /// The ids of the first seeding, for `GET /heroes/{id}`.
    ids: PathBuf,
    /// Heroes stored so far.
    stored: usize,
}

impl Runner<'_> {
    /// Measures `contender`: every scenario of its kind, start-up and memory,
    /// and what it logged.
    pub fn measure(&self, contender: &Contender, results: &mut Results) -> anyhow::Result<()> {
        let (mut server, first) = self.start_empty(contender)?;
        std::thread::sleep(IDLE_SETTLE);
        let idle_first = mib(server.rss_kib().0);
        eprintln!(
            "   first start to 200: {:.1} ms, idle RSS {idle_first:.1} MiB",
            ms(first)
        );

        let steps = match contender.serves {
            Serves::Registry => {
                scenario::registry_steps(self.args.seed_count, self.args.large_seed_count)
            }
            Serves::Hello => {
                server = self.start_from_cache(server, &contender.launch)?;
                scenario::hello_steps()
            }
        };
        let mut store = Store {
            ids: self.scratch.join(format!("ids-{}.txt", contender.key)),
            stored: 0,
        };
        for step in steps {
            match step {
                Step::Seed { total } => self.grow(contender, &mut store, total, results)?,
                Step::Load(scenario) => {
                    self.scenario(&mut server, contender, scenario, &store.ids, results)?
                }
            }
        }
        let exit = server.stop(STOP_GRACE);
        let restarts = match exit {
            Ok(_) => self.restarts(&contender.launch)?,
            Err(_) => Restarts::default(),
        };
        results
            .starts
            .push(start_row(contender, first, idle_first, restarts));
        self.collect_output(contender, results);
        exit.map(|_| ()).context("stopping the server")
    }

    /// Stops `first` and starts the contender again, now loading its compiled
    /// code from its cache (hero-host's state dir, wasmtime's own cache), so
    /// that hello's memory under load is compared between processes that
    /// both skipped the compiler, whatever state wasmtime's cache was in.
    fn start_from_cache(&self, first: Server, launch: &Launch) -> anyhow::Result<Server> {
        first.stop(STOP_GRACE).context("stopping the first start")?;
        let (mut server, started) = server::start(launch, &self.args.server_cpu)?;
        server.wait_ready(launch.listen, "/", started, START_TIMEOUT)?;
        Ok(server)
    }

    /// Seeds `contender` until it stores `total` heroes.
    fn grow(
        &self,
        contender: &Contender,
        store: &mut Store,
        total: usize,
        results: &mut Results,
    ) -> anyhow::Result<()> {
        let ids = match store.stored {
            0 => store.ids.clone(),
            _ => self
                .scratch
                .join(format!("ids-{}-{total}.txt", contender.key)),
        };
        let count = total.saturating_sub(store.stored);
        let seed = self.client.seed(contender.launch.listen, count, &ids)?;
        eprintln!(
            "   seeded {} heroes ({total} stored) in {:.1} s ({} errors)",
            seed.created, seed.seconds, seed.errors
        );
        store.stored += seed.created;
        results.seeds.push(SeedRow {
            label: contender.label.clone(),
            stored: store.stored,
            report: seed,
        });
        Ok(())
    }

    /// One scenario: the measured load, then the wrk cross-check and the
    /// scrape under load where they apply.
    fn scenario(
        &self,
        server: &mut Server,
        contender: &Contender,
        scenario: Scenario,
        ids: &Path,
        results: &mut Results,
    ) -> anyhow::Result<()> {
        let mut args = scenario.load_args(ids);
        args.extend(contender.load_args.iter().cloned());
        let measured = self.client.load(server, &args)?;
        let load = &measured.report;
        eprintln!(
            "   {}: {:.0} req/s, p50 {:.3} ms, p99 {:.3} ms, {} errors",
            scenario.title(),
            load.rps,
            load.latency.p50_ms,
            load.latency.p99_ms,
            load.non_2xx + load.transport_errors
        );
        results.rows.push(Row::new(
            scenario,
            contender.key,
            &contender.label,
            contender.reference,
            measured.report,
            mib(measured.peak_kib),
            mib(measured.end_kib),
        ));
        if self.cross_checks(contender, scenario) {
            self.cross_check(server, contender, results);
        }
        // The scrape runs beside the GET /heroes/{id} load, once the store
        // is seeded, before POST grows it.
        if matches!(scenario, Scenario::GetHero | Scenario::Hello) {
            self.scrape(server, contender, scenario, &args, results)?;
        }
        Ok(())
    }

    /// Whether `BENCH_WRK` asks for a wrk run of this scenario. wrk sends no
    /// extra headers, so the like-for-like contender is never cross-checked.
    fn cross_checks(&self, contender: &Contender, scenario: Scenario) -> bool {
        match self.args.wrk.as_str() {
            "hello" => scenario == Scenario::Hello && contender.load_args.is_empty(),
            "ceiling" => contender.key == "hello-hyper",
            _ => false,
        }
    }

    fn cross_check(&self, server: &Server, contender: &Contender, results: &mut Results) {
        match self.client.wrk(server.listen) {
            Ok(check) => {
                eprintln!(
                    "   cross-check, {}: {:.0} req/s, p50 {:.3} ms, p99 {:.3} ms",
                    check.tool, check.rps, check.p50_ms, check.p99_ms
                );
                results.cross_checks.push(CrossCheck {
                    contender: contender.key.into(),
                    label: contender.label.clone(),
                    ..check
                });
            }
            Err(error) => results
                .notes
                .push(format!("wrk cross-check failed: {error:#}")),
        }
    }

    /// `/metrics` scraped while `args` loads the public port, when the
    /// contender has metrics.
    fn scrape(
        &self,
        server: &mut Server,
        contender: &Contender,
        scenario: Scenario,
        args: &[String],
        results: &mut Results,
    ) -> anyhow::Result<()> {
        let Some(metrics) = contender.metrics else {
            return Ok(());
        };
        let mut args = args.to_vec();
        args.extend([
            "--scrape-addr".to_owned(),
            metrics.to_string(),
            "--scrapes".into(),
            self.args.scrapes.to_string(),
            "--scrape-interval".into(),
            format!("{}ms", self.args.scrape_interval.as_millis()),
        ]);
        let load = self.client.load(server, &args)?.report;
        let scrape = load.scrape.clone().unwrap_or_default();
        eprintln!(
            "   /metrics under load: p50 {:.3} ms, p99 {:.3} ms, {} errors",
            scrape.latency.p50_ms, scrape.latency.p99_ms, scrape.errors
        );
        results.scrapes.push(ScrapeRow {
            contender: contender.key.into(),
            label: contender.label.clone(),
            scenario: scenario.short(),
            scrape,
            load_rps: load.rps,
            load_p99_ms: load.latency.p99_ms,
        });
        Ok(())
    }

    /// Restarts, each timed to its first 200: with the compiled cache for
    /// hero-host; a second start for the others.
    fn restarts(&self, launch: &Launch) -> anyhow::Result<Restarts> {
        let mut restarts = Restarts::default();
        for _ in 0..self.args.warm_starts {
            let (mut server, started) = server::start(launch, &self.args.server_cpu)?;
            let ready = server.wait_ready(launch.listen, "/", started, START_TIMEOUT)?;
            restarts.times.push(ready);
            if restarts.idle_mib.is_none() {
                std::thread::sleep(IDLE_SETTLE);
                restarts.idle_mib = Some(mib(server.rss_kib().0));
            }
            server.stop(STOP_GRACE)?;
        }
        restarts.times.sort();
        eprintln!(
            "   restart to 200 (median of {}): {:?} ms, idle RSS {:?} MiB",
            restarts.times.len(),
            restarts.median().map(ms),
            restarts.idle_mib
        );
        Ok(restarts)
    }

    /// Counts the contender's log lines and keeps the end of its stderr.
    fn collect_output(&self, contender: &Contender, results: &mut Results) {
        let launch = &contender.launch;
        if let Some(log) = &launch.stdout {
            results
                .logs
                .push(LogRow::count(contender.key, &contender.label, log));
        }
        self.discard_log(contender);
        let stderr = server::tail(&launch.stderr, 600);
        if !stderr.trim().is_empty() {
            results.stderr.push((contender.key.to_owned(), stderr));
        }
    }

    /// Starts `contender` with an empty state directory; returns the server
    /// and the time from process start to its first 200.
    fn start_empty(&self, contender: &Contender) -> anyhow::Result<(Server, Duration)> {
        if let Some(dir) = &contender.state_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
        let launch = &contender.launch;
        let (mut server, started) = server::start(launch, &self.args.server_cpu)?;
        let first = server.wait_ready(launch.listen, "/", started, START_TIMEOUT)?;
        Ok((server, first))
    }

    /// Deletes the contender's stdout file, unless `--keep`.
    fn discard_log(&self, contender: &Contender) {
        if let (Some(log), false) = (&contender.launch.stdout, self.args.keep) {
            let _ = std::fs::remove_file(log);
        }
    }
}

/// Restart times, sorted, and the idle memory after the first.
#[derive(Default)]
struct Restarts {
    times: Vec<Duration>,
    idle_mib: Option<f64>,
}

impl Restarts {
    fn median(&self) -> Option<Duration> {
        self.times.get(self.times.len() / 2).copied()
    }
}

fn start_row(
    contender: &Contender,
    first: Duration,
    idle_first: f64,
    restarts: Restarts,
) -> StartRow {
    StartRow {
        contender: contender.key.into(),
        label: contender.label.clone(),
        first_ms: ms(first),
        first_note: match contender.state_dir {
            Some(_) => "empty state dir: compiles the component".into(),
            None => "first start".into(),
        },
        restart_ms: restarts.median().map(ms),
        restart_min_ms: restarts.times.first().map(|d| ms(*d)),
        idle_rss_first_mib: idle_first,
        idle_rss_restart_mib: restarts.idle_mib,
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}
