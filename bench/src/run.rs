//! `hero-bench run`: every contender in turn, on the same machine, in the same
//! run, then the features priced in interleaved rounds; the tables printed
//! and the results written as JSON.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;

use crate::client::Client;
use crate::contender::SETTINGS;
use crate::lineup::{self, Lineup};
use crate::machine::{self, Machine};
use crate::report;
use crate::results::{Config, Results};
use crate::runner::Runner;
use crate::targets;

/// Flags of `hero-bench run`; each has a `BENCH_*` environment variable.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The release `hero-host` binary.
    #[arg(long, env = "BENCH_HERO_HOST")]
    pub hero_host: PathBuf,
    /// The Hero Registry component.
    #[arg(long, env = "BENCH_REGISTRY_WASM")]
    pub registry_wasm: PathBuf,
    /// The minimal WASIp3 hello component (guests/hello-p3).
    #[arg(long, env = "BENCH_HELLO_WASM")]
    pub hello_wasm: PathBuf,
    /// `wasmtime` (the CLI); contender skipped when absent.
    #[arg(long, env = "BENCH_WASMTIME")]
    pub wasmtime: Option<PathBuf>,
    /// Python of the FastAPI venv; contender skipped when absent.
    #[arg(long, env = "BENCH_PYTHON")]
    pub python: Option<PathBuf>,
    /// The FastAPI Hero Registry.
    #[arg(
        long,
        env = "BENCH_FASTAPI_APP",
        default_value = "bench/fastapi/app.py"
    )]
    pub fastapi_app: PathBuf,
    /// Where results go: `<out-dir>/<stamp>.json`, and a scratch directory
    /// `<out-dir>/<stamp>/` for logs, ids and state.
    #[arg(long, env = "BENCH_OUT_DIR", default_value = "bench/results")]
    pub out_dir: PathBuf,
    /// Name of this run (default: seconds since the epoch).
    #[arg(long, env = "BENCH_STAMP")]
    pub stamp: Option<String>,
    /// The code measured (e.g. `git describe`), recorded in the results.
    #[arg(long, env = "BENCH_REVISION", default_value = "unknown")]
    pub revision: String,
    /// Measured time per scenario (`10s`; a bare number is seconds).
    #[arg(long, env = "BENCH_DURATION", default_value = "10s", value_parser = parse_secs)]
    pub duration: Duration,
    /// Warm-up per scenario, not measured.
    #[arg(long, env = "BENCH_WARMUP", default_value = "2s", value_parser = parse_secs)]
    pub warmup: Duration,
    /// Connections of the load generator, each with one request in flight.
    #[arg(long, env = "BENCH_CONCURRENCY", default_value = "32")]
    pub concurrency: usize,
    /// Heroes stored before the registry scenarios.
    #[arg(long, env = "BENCH_SEED_COUNT", default_value = "10000")]
    pub seed_count: usize,
    /// Heroes stored for the second list scenario (the store grows to it
    /// after the reads at `seed_count`); not above `seed_count`: skipped.
    #[arg(long, env = "BENCH_LARGE_SEED_COUNT", default_value = "100000")]
    pub large_seed_count: usize,
    /// `/metrics` scrapes measured while the public port is saturated.
    #[arg(long, env = "BENCH_SCRAPES", default_value = "200")]
    pub scrapes: usize,
    /// Pause between scrapes.
    #[arg(long, env = "BENCH_SCRAPE_INTERVAL", default_value = "20ms", value_parser = parse_secs)]
    pub scrape_interval: Duration,
    /// Restarts with the compiled cache, to time start-up (median reported).
    #[arg(long, env = "BENCH_WARM_STARTS", default_value = "3")]
    pub warm_starts: usize,
    /// Core (a `taskset` list) the server under test runs on.
    #[arg(long, env = "BENCH_SERVER_CPU", default_value = "0")]
    pub server_cpu: String,
    /// Core the load generator runs on (`bench/run` pins this runner there too).
    #[arg(long, env = "BENCH_CLIENT_CPU", default_value = "1")]
    pub client_cpu: String,
    /// Where servers' stdout (their logs) goes: `file` (in the scratch
    /// directory, counted, then deleted) or `null` (/dev/null).
    #[arg(long, env = "BENCH_LOG_SINK", default_value = "file", value_parser = ["file", "null"])]
    pub log_sink: String,
    /// Keep the scratch directory (logs, state, ids).
    #[arg(long, env = "BENCH_KEEP")]
    pub keep: bool,
    /// Only these contenders (comma-separated keys: hero-host, hero-host-off,
    /// fastapi, hello-wasmtime, hello-wasmtime-like, hello-hero-host-off,
    /// hello-hero-host, hello-hyper).
    #[arg(long, env = "BENCH_ONLY", value_delimiter = ',')]
    pub only: Vec<String>,
    /// Cross-check `GET /` of hello contenders with `wrk -t1` (same
    /// connections, same cores), when `wrk` is installed: `ceiling` (the bare
    /// hyper row only, where one load-generator core may be the limit), `hello`
    /// (every hello row) or `off`.
    #[arg(long, env = "BENCH_WRK", default_value = "ceiling", value_parser = ["ceiling", "hello", "off"])]
    pub wrk: String,
    /// First port; contender i listens on base + 10·i (admin on the next).
    /// Below the ephemeral range: a port the run's own client sockets took
    /// could not be listened on again.
    #[arg(long, env = "BENCH_PORT_BASE", default_value = "18080")]
    pub port_base: u16,
    /// Rounds of the interleaved measurements that price the instrumentation
    /// (telemetry on against off) and tracing (OTLP export, 10% sampled,
    /// against none): both servers up, loaded in short turns; the targets
    /// use the median round. 0 skips them.
    #[arg(long, env = "BENCH_PRICE_ROUNDS", default_value = "3")]
    pub price_rounds: usize,
    /// Measured time of each side in one interleaved round (default: the
    /// scenario's duration). On a machine whose speed drifts, many short
    /// rounds keep each with/without pair close in time, and their median
    /// steadier than that of a few long ones.
    #[arg(long, env = "BENCH_PRICE_SLICE", value_parser = parse_secs)]
    pub price_slice: Option<Duration>,
    /// Within a round, how long one side is loaded before the other takes
    /// its turn (A B B A …, each side's connections kept open): the shorter,
    /// the closer in time the two sides' requests, and the less a drifting
    /// machine weighs on the difference between them.
    #[arg(long, env = "BENCH_PRICE_TURN", default_value = "250ms", value_parser = parse_turn)]
    pub price_turn: Duration,
}

fn parse_secs(text: &str) -> Result<Duration, String> {
    match text.parse::<f64>() {
        Ok(secs) if secs >= 0.0 => Ok(Duration::from_secs_f64(secs)),
        _ => humantime::parse_duration(text).map_err(|e| format!("{text:?}: {e}")),
    }
}

/// A turn of an interleaved round: a duration longer than zero.
fn parse_turn(text: &str) -> Result<Duration, String> {
    match parse_secs(text)? {
        turn if turn.is_zero() => Err(format!("{text:?}: a turn must last longer than zero")),
        turn => Ok(turn),
    }
}

/// Runs the whole benchmark.
pub fn run(args: RunArgs) -> anyhow::Result<()> {
    let stamp = args.stamp.clone().unwrap_or_else(|| {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        secs.to_string()
    });
    let scratch = args.out_dir.join(&stamp);
    std::fs::create_dir_all(&scratch).with_context(|| format!("creating {}", scratch.display()))?;
    let scratch = scratch.canonicalize()?;
    let exe = std::env::current_exe()?;

    let tracing = lineup::tracing_support(&args.hero_host);
    let lineup = lineup::lineup(&args, &scratch, &exe, tracing)?;
    let mut results = Results {
        stamp: stamp.clone(),
        revision: args.revision.clone(),
        machine: Machine::probe(),
        config: config(&args),
        notes: lineup.notes.clone(),
        ..Results::default()
    };
    eprintln!(
        "hero-bench: {} contenders, {} s + {} s warm-up per scenario, {} connections; \
         servers on CPU {}, load generator on CPU {}",
        lineup.contenders.len(),
        args.duration.as_secs_f64(),
        args.warmup.as_secs_f64(),
        args.concurrency,
        args.server_cpu,
        args.client_cpu
    );
    let runner = Runner {
        args: &args,
        client: Client {
            exe,
            cpu: args.client_cpu.clone(),
            concurrency: args.concurrency,
            warmup: args.warmup,
            duration: args.duration,
        },
        scratch: &scratch,
    };
    measure(&runner, &lineup, &mut results);
    finish(&mut results);
    let table = report::render(&results);
    println!("{table}");
    write_json(&args.out_dir, &stamp, &results)?;
    if !args.keep {
        let _ = std::fs::remove_dir_all(&scratch);
    }
    Ok(())
}

/// Every contender in turn, then every priced feature.
fn measure(runner: &Runner<'_>, lineup: &Lineup, results: &mut Results) {
    for contender in &lineup.contenders {
        eprintln!("== {} ==", contender.label);
        if let Err(error) = runner.measure(contender, results) {
            let note = format!("{}: not measured: {error:#}", contender.label);
            eprintln!("   {note}");
            results.notes.push(note);
        }
    }
    for plan in &lineup.prices {
        eprintln!("== price of {}: {} ==", plan.what, plan.scenario.short());
        let row = runner.price(plan);
        if let Some(note) = &row.note {
            eprintln!("   {note}");
        }
        results.prices.push(row);
    }
}

/// Ratios, targets, and the machine's state at the end.
fn finish(results: &mut Results) {
    results.machine.loadavg_after = machine::loadavg();
    if results.machine.was_busy() {
        results.notes.push(
            "the machine was busy with other work when the run started (1-minute load \
             average above 0.5): figures are noisy, compare ratios within this run only"
                .into(),
        );
    }
    results.finish();
    results.targets = targets::evaluate(results);
}

fn config(args: &RunArgs) -> Config {
    Config {
        duration_s: args.duration.as_secs_f64(),
        warmup_s: args.warmup.as_secs_f64(),
        price_slice_s: args.price_slice.unwrap_or(args.duration).as_secs_f64(),
        price_turn_s: args.price_turn.as_secs_f64(),
        concurrency: args.concurrency,
        seed_count: args.seed_count,
        large_seed_count: args.large_seed_count,
        scrapes: args.scrapes,
        scrape_interval_ms: args.scrape_interval.as_secs_f64() * 1e3,
        server_cpu: args.server_cpu.clone(),
        client_cpu: args.client_cpu.clone(),
        log_sink: args.log_sink.clone(),
        load_generator: "hero-bench load: hyper 1 HTTP/1.1 client, keep-alive, one \
                         request in flight per connection, one thread"
            .into(),
        settings: format!(
            "request timeout {}, instance reuse {} requests, {} at once, idle instances kept {}",
            SETTINGS.request_timeout,
            SETTINGS.reuse_count,
            SETTINGS.concurrent_reuse,
            SETTINGS.idle_instance_timeout
        ),
    }
}

fn write_json(out_dir: &Path, stamp: &str, results: &Results) -> anyhow::Result<()> {
    let path = out_dir.join(format!("{stamp}.json"));
    std::fs::write(&path, serde_json::to_string_pretty(results)?)
        .with_context(|| format!("writing {}", path.display()))?;
    println!("results: {}", path.display());
    Ok(())
}
