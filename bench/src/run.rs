//! `hero-bench run`: every contender in turn, on the same machine, in the same
//! run. Each server runs pinned to one core and the load generator to another;
//! each scenario is a warm-up then a measured closed-loop load.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Serialize;

use crate::load::{LoadReport, SeedReport};
use crate::report::{
    self, CrossCheck, LogRow, Machine, PriceRound, PriceRow, Results, Row, ScrapeRow, StartRow,
};
use crate::server::{self, Launch, Server};

/// Body of every `POST /heroes`; `{n}` is a counter, so names differ.
pub const HERO_BODY: &str =
    r#"{"name":"Hero {n}","power":"Lifts {n} tonnes before breakfast","team":"Bench League"}"#;

/// Flags of `hero-bench run`; each has a `BENCH_*` environment variable.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The release `hero-host` binary.
    #[arg(long, env = "BENCH_HERO_HOST")]
    hero_host: PathBuf,
    /// The Hero Registry component.
    #[arg(long, env = "BENCH_REGISTRY_WASM")]
    registry_wasm: PathBuf,
    /// The minimal WASIp3 hello component (guests/hello-p3).
    #[arg(long, env = "BENCH_HELLO_WASM")]
    hello_wasm: PathBuf,
    /// `wasmtime` (the CLI); contender skipped when absent.
    #[arg(long, env = "BENCH_WASMTIME")]
    wasmtime: Option<PathBuf>,
    /// Python of the FastAPI venv; contender skipped when absent.
    #[arg(long, env = "BENCH_PYTHON")]
    python: Option<PathBuf>,
    /// The FastAPI Hero Registry.
    #[arg(
        long,
        env = "BENCH_FASTAPI_APP",
        default_value = "bench/fastapi/app.py"
    )]
    fastapi_app: PathBuf,
    /// Where results go: `<out-dir>/<stamp>.json`, and a scratch directory
    /// `<out-dir>/<stamp>/` for logs, ids and state.
    #[arg(long, env = "BENCH_OUT_DIR", default_value = "bench/results")]
    out_dir: PathBuf,
    /// Name of this run (default: seconds since the epoch).
    #[arg(long, env = "BENCH_STAMP")]
    stamp: Option<String>,
    /// The code measured (e.g. `git describe`), recorded in the results.
    #[arg(long, env = "BENCH_REVISION", default_value = "unknown")]
    revision: String,
    /// Measured time per scenario (`10s`; a bare number is seconds).
    #[arg(long, env = "BENCH_DURATION", default_value = "10s", value_parser = parse_secs)]
    duration: Duration,
    /// Warm-up per scenario, not measured.
    #[arg(long, env = "BENCH_WARMUP", default_value = "2s", value_parser = parse_secs)]
    warmup: Duration,
    /// Connections of the load generator, each with one request in flight.
    #[arg(long, env = "BENCH_CONCURRENCY", default_value = "32")]
    concurrency: usize,
    /// Heroes stored before the registry scenarios.
    #[arg(long, env = "BENCH_SEED_COUNT", default_value = "10000")]
    seed_count: usize,
    /// `/metrics` scrapes measured while the public port is saturated.
    #[arg(long, env = "BENCH_SCRAPES", default_value = "200")]
    scrapes: usize,
    /// Pause between scrapes.
    #[arg(long, env = "BENCH_SCRAPE_INTERVAL", default_value = "20ms", value_parser = parse_secs)]
    scrape_interval: Duration,
    /// Restarts with the compiled cache, to time start-up (median reported).
    #[arg(long, env = "BENCH_WARM_STARTS", default_value = "3")]
    warm_starts: usize,
    /// Core (a `taskset` list) the server under test runs on.
    #[arg(long, env = "BENCH_SERVER_CPU", default_value = "0")]
    server_cpu: String,
    /// Core the load generator runs on (`bench/run` pins this runner there too).
    #[arg(long, env = "BENCH_CLIENT_CPU", default_value = "1")]
    client_cpu: String,
    /// Where servers' stdout (their logs) goes: `file` (in the scratch
    /// directory, counted, then deleted) or `null` (/dev/null).
    #[arg(long, env = "BENCH_LOG_SINK", default_value = "file", value_parser = ["file", "null"])]
    log_sink: String,
    /// Keep the scratch directory (logs, state, ids).
    #[arg(long, env = "BENCH_KEEP")]
    keep: bool,
    /// Only these contenders (comma-separated keys: hero-host, hero-host-off,
    /// fastapi, hello-hero-host, hello-hero-host-off, hello-wasmtime, hello-hyper).
    #[arg(long, env = "BENCH_ONLY", value_delimiter = ',')]
    only: Vec<String>,
    /// Cross-check `GET /` of hello contenders with `wrk -t1` (same
    /// connections, same cores), when `wrk` is installed: `ceiling` (the bare
    /// hyper row only, where one load-generator core may be the limit), `hello`
    /// (every hello row) or `off`.
    #[arg(long, env = "BENCH_WRK", default_value = "ceiling", value_parser = ["ceiling", "hello", "off"])]
    wrk: String,
    /// First port; contender i listens on base + 10·i (admin on the next).
    /// Below the ephemeral range: a port the run's own client sockets took
    /// could not be listened on again.
    #[arg(long, env = "BENCH_PORT_BASE", default_value = "18080")]
    port_base: u16,
    /// Rounds of the interleaved measurement that prices the instrumentation
    /// (telemetry on against off, both servers up, alternating which goes
    /// first; the targets use the median round). 0 skips it.
    #[arg(long, env = "BENCH_PRICE_ROUNDS", default_value = "3")]
    pub price_rounds: usize,
}

fn parse_secs(text: &str) -> Result<Duration, String> {
    match text.parse::<f64>() {
        Ok(secs) if secs >= 0.0 => Ok(Duration::from_secs_f64(secs)),
        _ => humantime::parse_duration(text).map_err(|e| format!("{text:?}: {e}")),
    }
}

/// A scenario: what the load generator sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// `GET /heroes/{id}` over the seeded ids.
    GetHero,
    /// `GET /heroes?limit=100` with the seeded heroes stored.
    List,
    /// `GET /` of the registry (its hello-equivalent).
    Root,
    /// `POST /heroes`; last, since it grows the store.
    PostHero,
    /// `GET /` of a hello server.
    Hello,
}

impl Scenario {
    /// A short name, for narrow columns.
    pub fn short(self) -> &'static str {
        match self {
            Scenario::GetHero => "GET /heroes/{id}",
            Scenario::List => "GET /heroes?limit",
            Scenario::Root => "GET /",
            Scenario::PostHero => "POST /heroes",
            Scenario::Hello => "GET / (hello)",
        }
    }

    /// The heading in the table.
    pub fn title(self, seed_count: usize) -> String {
        match self {
            Scenario::GetHero => "GET /heroes/{id}".into(),
            Scenario::List => format!("GET /heroes?limit=100 ({seed_count} heroes stored)"),
            Scenario::Root => "GET / (registry welcome)".into(),
            Scenario::PostHero => "POST /heroes".into(),
            Scenario::Hello => "GET / (hello component; the runtime floor)".into(),
        }
    }

    fn load_args(self, ids: &Path) -> Vec<String> {
        let s = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        match self {
            Scenario::GetHero => {
                let mut args = s(&["--path", "/heroes/{id}", "--ids"]);
                args.push(ids.display().to_string());
                args
            }
            Scenario::List => s(&["--path", "/heroes?limit=100"]),
            Scenario::Root | Scenario::Hello => s(&["--path", "/"]),
            Scenario::PostHero => {
                s(&["--method", "POST", "--path", "/heroes", "--body", HERO_BODY])
            }
        }
    }
}

/// What a contender serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Serves {
    Registry,
    Hello,
}

/// One server configuration under test.
struct Contender {
    /// Short key (for `BENCH_ONLY` and the JSON).
    key: &'static str,
    /// What the table calls it.
    label: String,
    serves: Serves,
    /// The row other rows of its scenarios are compared with.
    reference: bool,
    launch: Launch,
    /// The `/metrics` endpoint to scrape under load, if it has one.
    metrics: Option<SocketAddr>,
    /// Its state directory, emptied before the first start (cold), kept for
    /// the warm starts; `None` when it has no state.
    state_dir: Option<PathBuf>,
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

    let mut notes = Vec::new();
    let log_off = hero_host_has_log_format_off(&args.hero_host)?;
    if !log_off {
        notes.push(
            "hero-host has no `--log-format off`: the \"telemetry off\" rows have metrics off \
             but logs ON"
                .to_owned(),
        );
    }
    let contenders = contenders(&args, &scratch, &exe, log_off, &mut notes)?;

    let mut results = Results {
        stamp: stamp.clone(),
        revision: args.revision.clone(),
        machine: Machine::probe(),
        config: report::Config {
            duration_s: args.duration.as_secs_f64(),
            warmup_s: args.warmup.as_secs_f64(),
            concurrency: args.concurrency,
            seed_count: args.seed_count,
            scrapes: args.scrapes,
            scrape_interval_ms: args.scrape_interval.as_secs_f64() * 1e3,
            server_cpu: args.server_cpu.clone(),
            client_cpu: args.client_cpu.clone(),
            log_sink: args.log_sink.clone(),
            load_generator: "hero-bench load: hyper 1 HTTP/1.1 client, keep-alive, one \
                             request in flight per connection, one thread"
                .into(),
        },
        notes,
        ..Results::default()
    };
    eprintln!(
        "hero-bench: {} contenders, {} s + {} s warm-up per scenario, {} connections; \
         servers on CPU {}, load generator on CPU {}",
        contenders.len(),
        args.duration.as_secs_f64(),
        args.warmup.as_secs_f64(),
        args.concurrency,
        args.server_cpu,
        args.client_cpu
    );

    let runner = Runner {
        args: &args,
        exe: &exe,
        scratch: &scratch,
    };
    for contender in &contenders {
        eprintln!("== {} ==", contender.label);
        if let Err(error) = runner.measure(contender, &mut results) {
            let note = format!("{}: not measured: {error:#}", contender.label);
            eprintln!("   {note}");
            results.notes.push(note);
        }
    }

    if args.price_rounds > 0 {
        for (scenario, on, off) in [
            (Scenario::GetHero, "hero-host", "hero-host-off"),
            (Scenario::Hello, "hello-hero-host", "hello-hero-host-off"),
        ] {
            let find = |key| contenders.iter().find(|c| c.key == key);
            let (Some(on), Some(off)) = (find(on), find(off)) else {
                continue;
            };
            eprintln!("== instrumentation price: {} ==", scenario.short());
            match runner.price(on, off, scenario) {
                Ok(row) => results.prices.push(row),
                Err(error) => results.notes.push(format!(
                    "instrumentation price of {}: not measured: {error:#}",
                    scenario.short()
                )),
            }
        }
    }

    results.machine.loadavg_after = report::loadavg();
    let busy = |loadavg: &str| {
        loadavg
            .split_whitespace()
            .next()
            .and_then(|one| one.parse::<f64>().ok())
            .is_some_and(|one| one > 0.5)
    };
    // Only the figure from before says anything: the run itself keeps two
    // cores busy.
    if busy(&results.machine.loadavg_before) {
        results.notes.push(
            "the machine was busy with other work when the run started (1-minute load \
             average above 0.5): figures are noisy, compare ratios within this run only"
                .into(),
        );
    }
    results.finish();
    let table = results.render();
    println!("{table}");
    let json_path = args.out_dir.join(format!("{stamp}.json"));
    std::fs::write(&json_path, serde_json::to_string_pretty(&results)?)
        .with_context(|| format!("writing {}", json_path.display()))?;
    println!("results: {}", json_path.display());
    if !args.keep {
        let _ = std::fs::remove_dir_all(&scratch);
    }
    Ok(())
}

/// Whether `hero-host up` accepts `--log-format off`.
fn hero_host_has_log_format_off(hero_host: &Path) -> anyhow::Result<bool> {
    let output = Command::new(hero_host)
        .args(["up", "--help"])
        .output()
        .with_context(|| format!("running {} up --help", hero_host.display()))?;
    let help = String::from_utf8_lossy(&output.stdout);
    Ok(help.lines().any(|l| {
        let l = l.trim();
        l.starts_with("- off:") || l.contains("possible values: json, pretty, off")
    }))
}

fn contenders(
    args: &RunArgs,
    scratch: &Path,
    exe: &Path,
    log_off: bool,
    notes: &mut Vec<String>,
) -> anyhow::Result<Vec<Contender>> {
    let registry_manifest = scratch.join("registry.spin.toml");
    std::fs::write(
        &registry_manifest,
        manifest(
            "hero-registry",
            &args.registry_wasm.canonicalize()?,
            &["/", "/heroes", "/heroes/:id"],
            true,
        ),
    )?;
    let hello_manifest = scratch.join("hello.spin.toml");
    std::fs::write(
        &hello_manifest,
        manifest("hello", &args.hello_wasm.canonicalize()?, &["/..."], false),
    )?;

    let mut port = args.port_base;
    let mut next_addr = || {
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        port += 10;
        addr
    };
    let stdout = |key: &str| (args.log_sink == "file").then(|| scratch.join(format!("{key}.log")));
    let stderr = |key: &str| scratch.join(format!("{key}.stderr"));
    let hero_host = |key: &'static str,
                     label: String,
                     serves: Serves,
                     reference: bool,
                     telemetry: bool,
                     listen: SocketAddr| {
        let admin: SocketAddr = ([127, 0, 0, 1], listen.port() + 1).into();
        let state_dir = scratch.join(format!("state-{key}"));
        let manifest = match serves {
            Serves::Registry => &registry_manifest,
            Serves::Hello => &hello_manifest,
        };
        let mut host_args = vec![
            "up".to_owned(),
            "-f".into(),
            manifest.display().to_string(),
            "--listen".into(),
            listen.to_string(),
            "--admin-listen".into(),
            admin.to_string(),
            "--state-dir".into(),
            state_dir.display().to_string(),
        ];
        let mut env = Vec::new();
        if !telemetry {
            // Through the environment: `--metrics` takes no value (a clap
            // bool flag), while `HERO_HOST_METRICS=off` is honoured.
            env.push(("HERO_HOST_METRICS".to_owned(), "off".to_owned()));
            if log_off {
                host_args.extend(["--log-format".into(), "off".into()]);
            }
        }
        Contender {
            key,
            label,
            serves,
            reference,
            launch: Launch {
                program: args.hero_host.clone(),
                args: host_args,
                env,
                stdout: stdout(key),
                stderr: stderr(key),
                listen,
            },
            metrics: telemetry.then_some(admin),
            state_dir: Some(state_dir),
        }
    };
    let off = if log_off {
        "metrics off, logs off"
    } else {
        "metrics off, LOGS ON"
    };

    let mut all = vec![
        hero_host(
            "hero-host",
            "hero-host (telemetry on)".into(),
            Serves::Registry,
            true,
            true,
            next_addr(),
        ),
        hero_host(
            "hero-host-off",
            format!("hero-host ({off})"),
            Serves::Registry,
            false,
            false,
            next_addr(),
        ),
    ];

    let fastapi_addr = next_addr();
    match &args.python {
        Some(python) if python.exists() => all.push(Contender {
            key: "fastapi",
            label: "FastAPI + uvicorn (in memory)".into(),
            serves: Serves::Registry,
            reference: false,
            launch: Launch {
                program: python.clone(),
                args: vec![
                    args.fastapi_app.canonicalize()?.display().to_string(),
                    "--host".into(),
                    "127.0.0.1".into(),
                    "--port".into(),
                    fastapi_addr.port().to_string(),
                ],
                env: vec![("PYTHONUNBUFFERED".into(), "0".into())],
                stdout: stdout("fastapi"),
                stderr: stderr("fastapi"),
                listen: fastapi_addr,
            },
            metrics: Some(fastapi_addr),
            state_dir: None,
        }),
        _ => notes.push("FastAPI: no venv python given or found; skipped".into()),
    }

    all.push(hero_host(
        "hello-hero-host",
        "hero-host hello-p3 (telemetry on)".into(),
        Serves::Hello,
        true,
        true,
        next_addr(),
    ));
    all.push(hero_host(
        "hello-hero-host-off",
        format!("hero-host hello-p3 ({off})"),
        Serves::Hello,
        false,
        false,
        next_addr(),
    ));

    let wasmtime_addr = next_addr();
    match &args.wasmtime {
        Some(wasmtime) if wasmtime.exists() => all.push(Contender {
            key: "hello-wasmtime",
            label: "wasmtime serve hello-p3".into(),
            serves: Serves::Hello,
            reference: false,
            launch: Launch {
                program: wasmtime.clone(),
                args: wasmtime_serve_args(wasmtime_addr, &args.hello_wasm.canonicalize()?),
                env: Vec::new(),
                stdout: stdout("hello-wasmtime"),
                stderr: stderr("hello-wasmtime"),
                listen: wasmtime_addr,
            },
            metrics: None,
            state_dir: None,
        }),
        _ => notes.push("wasmtime serve: `wasmtime` 48.0.8 not installed; skipped".into()),
    }

    let hyper_addr = next_addr();
    all.push(Contender {
        key: "hello-hyper",
        label: "bare hyper hello (ceiling)".into(),
        serves: Serves::Hello,
        reference: false,
        launch: Launch {
            program: exe.to_owned(),
            args: vec!["hello".into(), "--listen".into(), hyper_addr.to_string()],
            env: Vec::new(),
            stdout: None,
            stderr: stderr("hello-hyper"),
            listen: hyper_addr,
        },
        metrics: None,
        state_dir: None,
    });

    if !args.only.is_empty() {
        all.retain(|c| args.only.iter().any(|k| k == c.key));
    }
    Ok(all)
}

/// `wasmtime serve` flags for a spin-sdk 7 WASIp3 component: it imports
/// WASIp2 `cli` (stdout, environment) and WASIp3 `http` (`-Sp3` also turns on
/// the component-model async features).
pub fn wasmtime_serve_args(addr: SocketAddr, wasm: &Path) -> Vec<String> {
    vec![
        "serve".into(),
        "--addr".into(),
        addr.to_string(),
        "-Scli".into(),
        "-Sp3".into(),
        wasm.display().to_string(),
    ]
}

fn manifest(name: &str, wasm: &Path, routes: &[&str], key_value: bool) -> String {
    let mut text = format!(
        "spin_manifest_version = 2\n\n[application]\nname = \"{name}\"\nversion = \"0.1.0\"\n\n"
    );
    for route in routes {
        text += &format!("[[trigger.http]]\nroute = \"{route}\"\ncomponent = \"{name}\"\n\n");
    }
    text += &format!("[component.{name}]\nsource = \"{}\"\n", wasm.display());
    if key_value {
        text += "key_value_stores = [\"default\"]\n";
    }
    text += "allowed_outbound_hosts = []\n";
    text
}

struct Runner<'a> {
    args: &'a RunArgs,
    exe: &'a Path,
    scratch: &'a Path,
}

/// How long a server may take to answer its first 200 (a cold compile of the
/// registry on a busy core takes seconds).
const START_TIMEOUT: Duration = Duration::from_secs(180);
/// How long a server may take to exit after SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(15);
/// Settling time before idle memory is read.
const IDLE_SETTLE: Duration = Duration::from_secs(1);

impl Runner<'_> {
    fn measure(&self, contender: &Contender, results: &mut Results) -> anyhow::Result<()> {
        let launch = &contender.launch;
        let (mut server, first) = self.start_empty(contender)?;
        std::thread::sleep(IDLE_SETTLE);
        let idle_first = server.rss_kib().0;
        eprintln!(
            "   first start to 200: {:.1} ms, idle RSS {:.1} MiB",
            ms(first),
            mib(idle_first)
        );

        let ids = self.scratch.join(format!("ids-{}.txt", contender.key));
        let scenarios: &[Scenario] = match contender.serves {
            Serves::Registry => {
                let seed = self.seed(launch.listen, &ids)?;
                eprintln!(
                    "   seeded {} heroes in {:.1} s ({} errors)",
                    seed.created, seed.seconds, seed.errors
                );
                results.seeds.push((contender.label.clone(), seed));
                &[
                    Scenario::GetHero,
                    Scenario::List,
                    Scenario::Root,
                    Scenario::PostHero,
                ]
            }
            Serves::Hello => &[Scenario::Hello],
        };

        for &scenario in scenarios {
            let (load, peak, end) = self.load(&mut server, scenario.load_args(&ids), &[])?;
            eprintln!(
                "   {}: {:.0} req/s, p50 {:.3} ms, p99 {:.3} ms, {} errors",
                scenario.title(self.args.seed_count),
                load.rps,
                load.latency.p50_ms,
                load.latency.p99_ms,
                load.non_2xx + load.transport_errors
            );
            results.rows.push(Row::new(
                scenario,
                scenario.title(self.args.seed_count),
                contender.key,
                &contender.label,
                contender.reference,
                load,
                mib(peak),
                mib(end),
            ));
            let wrk = match self.args.wrk.as_str() {
                "hello" => scenario == Scenario::Hello,
                "ceiling" => contender.key == "hello-hyper",
                _ => false,
            };
            if wrk {
                match self.wrk(server.listen) {
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
            // The scrape runs beside the GET /heroes/{id} load, once the store
            // is seeded, before POST grows it.
            if let (Some(metrics), Scenario::GetHero | Scenario::Hello) =
                (contender.metrics, scenario)
            {
                let scrape_args = [
                    "--scrape-addr".to_owned(),
                    metrics.to_string(),
                    "--scrapes".into(),
                    self.args.scrapes.to_string(),
                    "--scrape-interval".into(),
                    format!("{}ms", self.args.scrape_interval.as_millis()),
                ];
                let (load, _, _) =
                    self.load(&mut server, scenario.load_args(&ids), &scrape_args)?;
                let scrape = load.scrape.clone().unwrap_or_default();
                eprintln!(
                    "   /metrics under load: p50 {:.3} ms, p99 {:.3} ms, {} errors",
                    scrape.latency.p50_ms, scrape.latency.p99_ms, scrape.errors
                );
                results.scrapes.push(ScrapeRow {
                    contender: contender.key.into(),
                    label: contender.label.clone(),
                    scenario: scenario.short().into(),
                    scrape,
                    load_rps: load.rps,
                    load_p99_ms: load.latency.p99_ms,
                });
            }
        }
        let exit = server.stop(STOP_GRACE);

        // Restarts: with the compiled cache for hero-host; a second start for
        // the others.
        let mut warm = Vec::new();
        let mut idle_warm = None;
        if exit.is_ok() {
            for _ in 0..self.args.warm_starts {
                let (mut server, started) = server::start(launch, &self.args.server_cpu)?;
                warm.push(server.wait_ready(launch.listen, "/", started, START_TIMEOUT)?);
                if idle_warm.is_none() {
                    std::thread::sleep(IDLE_SETTLE);
                    idle_warm = Some(mib(server.rss_kib().0));
                }
                server.stop(STOP_GRACE)?;
            }
        }
        warm.sort();
        let warm_ms = warm.get(warm.len() / 2).map(|d| ms(*d));
        eprintln!(
            "   restart to 200 (median of {}): {:?} ms, idle RSS {:?} MiB",
            warm.len(),
            warm_ms,
            idle_warm
        );
        results.starts.push(StartRow {
            contender: contender.key.into(),
            label: contender.label.clone(),
            first_ms: ms(first),
            first_note: match contender.state_dir {
                Some(_) => "empty state dir: compiles the component".into(),
                None => "first start".into(),
            },
            restart_ms: warm_ms,
            restart_min_ms: warm.first().map(|d| ms(*d)),
            idle_rss_first_mib: mib(idle_first),
            idle_rss_restart_mib: idle_warm,
        });
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
        exit.map(|_| ()).context("stopping the server")
    }

    /// Telemetry on against off, interleaved: both servers up (one loaded at a
    /// time), `price_rounds` rounds, alternating which goes first, so drift
    /// of the machine during the run falls on both sides alike.
    fn price(
        &self,
        on: &Contender,
        off: &Contender,
        scenario: Scenario,
    ) -> anyhow::Result<PriceRow> {
        let mut servers = Vec::new();
        for contender in [on, off] {
            let (server, _) = self.start_empty(contender)?;
            let ids = self
                .scratch
                .join(format!("price-ids-{}.txt", contender.key));
            if scenario == Scenario::GetHero {
                self.seed(contender.launch.listen, &ids)?;
            }
            servers.push((server, ids));
        }
        let mut rounds = Vec::new();
        for round in 0..self.args.price_rounds {
            let mut rps = [0.0; 2];
            let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
            for side in order {
                let (server, ids) = &mut servers[side];
                rps[side] = self.load(server, scenario.load_args(ids), &[])?.0.rps;
            }
            let round = PriceRound::new(rps[0], rps[1]);
            eprintln!(
                "   on {:.0} req/s, off {:.0} req/s: cost {:.1}%",
                round.on_rps,
                round.off_rps,
                round.cost * 100.0
            );
            rounds.push(round);
        }
        for (server, _) in servers {
            server.stop(STOP_GRACE)?;
        }
        self.discard_log(on);
        self.discard_log(off);
        Ok(PriceRow::new(scenario, &on.label, rounds))
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

    /// Runs `hero-bench seed` against the server.
    fn seed(&self, addr: SocketAddr, ids: &Path) -> anyhow::Result<SeedReport> {
        let output = self
            .client(&[
                "seed".to_owned(),
                "--addr".into(),
                addr.to_string(),
                "--count".into(),
                self.args.seed_count.to_string(),
                "--out".into(),
                ids.display().to_string(),
            ])
            .stderr(Stdio::inherit())
            .output()?;
        if !output.status.success() {
            bail!("seeding failed ({})", output.status);
        }
        Ok(serde_json::from_slice(&output.stdout)?)
    }

    /// Runs `hero-bench load` against the server, watching its memory.
    /// Returns the report, the peak RSS and the RSS at the end, in KiB.
    fn load(
        &self,
        server: &mut Server,
        scenario_args: Vec<String>,
        extra: &[String],
    ) -> anyhow::Result<(LoadReport, u64, u64)> {
        let mut args = vec![
            "load".to_owned(),
            "--addr".into(),
            server.listen.to_string(),
            "--concurrency".into(),
            self.args.concurrency.to_string(),
            "--warmup".into(),
            format!("{}ms", self.args.warmup.as_millis()),
            "--duration".into(),
            format!("{}ms", self.args.duration.as_millis()),
        ];
        args.extend(scenario_args);
        args.extend(extra.iter().cloned());
        let reset = server.reset_peak();
        let mut child = self
            .client(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let mut sampled = 0;
        let began = Instant::now();
        while child.try_wait()?.is_none() {
            let (rss, _) = server.rss_kib();
            sampled = sampled.max(rss);
            std::thread::sleep(Duration::from_millis(100));
            if began.elapsed() > Duration::from_secs(600) {
                let _ = child.kill();
            }
        }
        let output = child.wait_with_output()?;
        if !output.status.success() {
            bail!("the load generator failed ({})", output.status);
        }
        let (end, hwm) = server.rss_kib();
        if !server.running() {
            bail!("the server died under load");
        }
        // Without a reset, VmHWM is the peak since start; sampling is then the
        // better figure.
        let peak = if reset {
            hwm.max(sampled)
        } else {
            sampled.max(end)
        };
        Ok((serde_json::from_slice(&output.stdout)?, peak, end))
    }

    /// `wrk -t1` on the load generator's core, same connections and duration
    /// (the server is already warm).
    fn wrk(&self, addr: SocketAddr) -> anyhow::Result<CrossCheck> {
        let tool = format!("wrk -t1 -c{}", self.args.concurrency);
        let output = Command::new("taskset")
            .arg("-c")
            .arg(&self.args.client_cpu)
            .arg("wrk")
            .arg("-t1")
            .arg(format!("-c{}", self.args.concurrency))
            .arg(format!("-d{}s", self.args.duration.as_secs().max(1)))
            .arg("--latency")
            .arg(format!("http://{addr}/"))
            .output()
            .context("running wrk")?;
        if !output.status.success() {
            bail!("wrk failed ({})", output.status);
        }
        let text = String::from_utf8_lossy(&output.stdout);
        let field = |prefix: &str| {
            text.lines()
                .find_map(|l| l.trim().strip_prefix(prefix))
                .map(str::trim)
                .with_context(|| format!("no {prefix:?} in wrk's output"))
        };
        Ok(CrossCheck {
            contender: String::new(),
            label: String::new(),
            tool,
            rps: field("Requests/sec:")?.parse()?,
            p50_ms: wrk_ms(field("50%")?)?,
            p99_ms: wrk_ms(field("99%")?)?,
        })
    }

    /// A command running this binary on the load generator's core.
    fn client(&self, args: &[String]) -> Command {
        let mut command = Command::new("taskset");
        command
            .arg("-c")
            .arg(&self.args.client_cpu)
            .arg(self.exe)
            .args(args);
        command
    }
}

/// A wrk latency (`126.00us`, `2.35ms`, `1.02s`) in milliseconds.
fn wrk_ms(text: &str) -> anyhow::Result<f64> {
    let split = text
        .find(|c: char| c.is_ascii_alphabetic())
        .with_context(|| format!("no unit in {text:?}"))?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse()?;
    Ok(match unit {
        "us" => number / 1e3,
        "ms" => number,
        "s" => number * 1e3,
        "m" => number * 60e3,
        _ => bail!("unknown unit in {text:?}"),
    })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrk_latencies_become_milliseconds() {
        assert_eq!(wrk_ms("126.00us").unwrap(), 0.126);
        assert_eq!(wrk_ms("2.35ms").unwrap(), 2.35);
        assert_eq!(wrk_ms("1.50s").unwrap(), 1500.0);
        assert!(wrk_ms("12").is_err());
    }

    #[test]
    fn manifest_points_at_the_wasm_with_its_routes() {
        let text = manifest("hello", Path::new("/abs/hello.wasm"), &["/..."], false);
        assert!(text.contains("route = \"/...\"\ncomponent = \"hello\""));
        assert!(text.contains("source = \"/abs/hello.wasm\""));
        assert!(!text.contains("key_value_stores"));
    }
}
