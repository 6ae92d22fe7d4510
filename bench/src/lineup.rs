//! The line-up of a run: the contenders measured in turn, and the features
//! priced in interleaved rounds afterwards.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use crate::contender::{Builder, Contender, Serves};
use crate::price::{
    GET_OVER_PLAIN_HELLO, INSTRUMENTATION, OVER_FASTAPI, OVER_LIKE_FOR_LIKE, OVER_PLAIN, TRACING,
};
use crate::run::RunArgs;
use crate::scenario::Scenario;
use crate::server::Launch;

/// One feature to price: a server with it and one without, and what must run
/// beside them.
pub struct PricePlan {
    /// The feature.
    pub what: &'static str,
    /// The load the rounds apply to the server with it.
    pub scenario: Scenario,
    /// The load they apply to the server without it: the same scenario,
    /// except when two scenarios are compared.
    pub off_scenario: Scenario,
    /// The server with the feature.
    pub on: Contender,
    /// The server without it.
    pub off: Contender,
    /// A collector to start first (the OTLP sink), if any.
    pub sink: Option<Launch>,
    /// Why the rounds cannot run, if they cannot.
    pub skip: Option<String>,
}

/// Everything a run measures.
pub struct Lineup {
    /// Measured one after the other, in this order (the tables' order).
    pub contenders: Vec<Contender>,
    /// Priced after them.
    pub prices: Vec<PricePlan>,
    /// Contenders left out, and why.
    pub notes: Vec<String>,
}

/// Environment that turns on OTLP trace export to `sink`, 10% sampled.
pub fn tracing_env(sink: SocketAddr) -> Vec<(String, String)> {
    [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{sink}")),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf".into()),
        ("OTEL_TRACES_SAMPLER", "traceidratio".into()),
        ("OTEL_TRACES_SAMPLER_ARG", "0.1".into()),
    ]
    .map(|(k, v)| (k.to_owned(), v))
    .to_vec()
}

/// Whether `hero-host up --help` says the host reads the OTLP variables;
/// `Err` says why tracing cannot be priced.
pub fn tracing_support(hero_host: &Path) -> Result<(), String> {
    let output = Command::new(hero_host)
        .args(["up", "--help"])
        .output()
        .map_err(|e| format!("running `hero-host up --help`: {e}"))?;
    if mentions_otlp(&String::from_utf8_lossy(&output.stdout)) {
        Ok(())
    } else {
        Err(
            "skipped: `hero-host up --help` does not mention OTEL_EXPORTER_OTLP_ENDPOINT, \
             so this build exports no traces yet"
                .into(),
        )
    }
}

fn mentions_otlp(help: &str) -> bool {
    help.contains("OTEL_EXPORTER_OTLP_ENDPOINT")
}

/// Builds the line-up; `tracing` is what [`tracing_support`] found.
pub fn lineup(
    args: &RunArgs,
    scratch: &Path,
    exe: &Path,
    tracing: Result<(), String>,
) -> anyhow::Result<Lineup> {
    let mut b = Builder::new(args, scratch, exe)?;
    let mut notes = Vec::new();
    let mut all = vec![
        b.hero_host(
            "hero-host",
            "hero-host (telemetry on)",
            Serves::Registry,
            true,
        ),
        b.hero_host(
            "hero-host-off",
            "hero-host (metrics off, logs off)",
            Serves::Registry,
            false,
        ),
    ];
    match b.fastapi()? {
        Some(fastapi) => all.push(fastapi),
        None => notes.push("FastAPI: no venv python given or found; skipped".into()),
    }
    for like_for_like in [false, true] {
        match b.wasmtime(like_for_like)? {
            Some(wasmtime) => all.push(wasmtime),
            None => notes.push("wasmtime serve: `wasmtime` 48.0.8 not installed; skipped".into()),
        }
    }
    all.push(b.hero_host(
        "hello-hero-host-off",
        "hero-host hello-p3 (metrics off, logs off)",
        Serves::Hello,
        false,
    ));
    all.push(b.hero_host(
        "hello-hero-host",
        "hero-host hello-p3 (telemetry on)",
        Serves::Hello,
        true,
    ));
    all.push(b.hyper());
    notes.dedup();

    let (traced, sink) = traced(&mut b, scratch, exe);
    if !args.only.is_empty() {
        all.retain(|c| args.only.iter().any(|k| k == c.key));
    }
    let prices = if args.price_rounds == 0 {
        Vec::new()
    } else {
        let list = Scenario::List {
            stored: args.seed_count,
        };
        price_plans(&all, list, traced, sink, tracing)
    };
    Ok(Lineup {
        contenders: all,
        prices,
        notes,
    })
}

/// hero-host as shipped with trace export on, and the sink it exports to.
fn traced(b: &mut Builder<'_>, scratch: &Path, exe: &Path) -> (Contender, Launch) {
    let mut traced = b.hero_host(
        "hero-host-traced",
        "hero-host (telemetry on, tracing 10%)",
        Serves::Registry,
        true,
    );
    traced.reference = false;
    let listen = b.next_addr();
    traced.launch.env.extend(tracing_env(listen));
    let sink = Launch {
        program: exe.to_owned(),
        args: vec!["sink".into(), "--listen".into(), listen.to_string()],
        env: Vec::new(),
        stdout: None,
        stderr: scratch.join("otlp-sink.stderr"),
        listen,
    };
    (traced, sink)
}

/// The instrumentation priced on the single-hero read and on hello, tracing
/// on the single-hero read, hero-host against both `wasmtime serve`s on hello
/// and against FastAPI on the single-hero read, `list` and POST, and its
/// single-hero read against plain `wasmtime serve`'s hello (the same rounds
/// give those ratios, and their p99 ratios, a steadier figure than rows
/// measured minutes apart); each only when its servers are in the line-up.
fn price_plans(
    all: &[Contender],
    list: Scenario,
    traced: Contender,
    sink: Launch,
    tracing: Result<(), String>,
) -> Vec<PricePlan> {
    let find = |key: &str| all.iter().find(|c| c.key == key).cloned();
    let mut plans = Vec::new();
    use Scenario::{GetHero, Hello, PostHero};
    let same = |what, scenario, on, off| (what, (scenario, on), (scenario, off));
    let pairs = [
        same(INSTRUMENTATION, GetHero, "hero-host", "hero-host-off"),
        same(
            INSTRUMENTATION,
            Hello,
            "hello-hero-host",
            "hello-hero-host-off",
        ),
        same(
            OVER_LIKE_FOR_LIKE,
            Hello,
            "hello-hero-host",
            "hello-wasmtime-like",
        ),
        same(OVER_PLAIN, Hello, "hello-hero-host", "hello-wasmtime"),
        (
            GET_OVER_PLAIN_HELLO,
            (GetHero, "hero-host"),
            (Hello, "hello-wasmtime"),
        ),
        same(OVER_FASTAPI, GetHero, "hero-host", "fastapi"),
        same(OVER_FASTAPI, list, "hero-host", "fastapi"),
        same(OVER_FASTAPI, PostHero, "hero-host", "fastapi"),
    ];
    for (what, (scenario, on), (off_scenario, off)) in pairs {
        if let (Some(on), Some(off)) = (find(on), find(off)) {
            plans.push(PricePlan {
                what,
                scenario,
                off_scenario,
                on,
                off,
                sink: None,
                skip: None,
            });
        }
    }
    if let Some(off) = find("hero-host") {
        plans.push(PricePlan {
            what: TRACING,
            scenario: Scenario::GetHero,
            off_scenario: Scenario::GetHero,
            on: traced,
            off,
            sink: Some(sink),
            skip: tracing.err(),
        });
    }
    plans
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: RunArgs,
    }

    /// A line-up over stand-in files in a fresh scratch directory.
    fn lineup_of(extra: &[&str], tracing: Result<(), String>) -> Lineup {
        // Tests run in parallel: each call gets its own directory.
        static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let scratch =
            std::env::temp_dir().join(format!("hero-bench-lineup-{}-{call}", std::process::id()));
        std::fs::create_dir_all(&scratch).unwrap();
        let file = |name: &str| {
            let path = scratch.join(name);
            std::fs::write(&path, b"").unwrap();
            path.display().to_string()
        };
        let (wasm, hello, wasmtime) = (file("r.wasm"), file("h.wasm"), file("wasmtime"));
        let mut argv = vec!["run", "--hero-host", "hero-host", "--registry-wasm", &wasm];
        argv.extend(["--hello-wasm", &hello, "--wasmtime", &wasmtime]);
        argv.extend(extra);
        let args = Cli::parse_from(argv).args;
        let lineup = lineup(&args, &scratch, Path::new("hero-bench"), tracing).unwrap();
        std::fs::remove_dir_all(&scratch).unwrap();
        lineup
    }

    #[test]
    fn hello_rows_go_from_plain_wasmtime_to_hero_host_as_shipped() {
        let lineup = lineup_of(&[], Ok(()));
        let keys: Vec<&str> = lineup.contenders.iter().map(|c| c.key).collect();
        assert_eq!(
            keys,
            [
                "hero-host",
                "hero-host-off",
                "hello-wasmtime",
                "hello-wasmtime-like",
                "hello-hero-host-off",
                "hello-hero-host",
                "hello-hyper",
            ]
        );
        assert_eq!(
            lineup.notes,
            ["FastAPI: no venv python given or found; skipped"]
        );
        let mut ports: Vec<u16> = lineup
            .contenders
            .iter()
            .map(|c| c.launch.listen.port())
            .collect();
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), keys.len());
        let like = &lineup.contenders[3];
        assert!(
            like.load_args
                .contains(&"spin-matched-route: /...".to_owned())
        );
    }

    #[test]
    fn features_and_runtimes_are_priced_and_tracing_has_its_own_sink() {
        let lineup = lineup_of(&[], Ok(()));
        let whats: Vec<(&str, Scenario)> =
            lineup.prices.iter().map(|p| (p.what, p.scenario)).collect();
        assert_eq!(
            whats,
            [
                (INSTRUMENTATION, Scenario::GetHero),
                (INSTRUMENTATION, Scenario::Hello),
                (OVER_LIKE_FOR_LIKE, Scenario::Hello),
                (OVER_PLAIN, Scenario::Hello),
                (GET_OVER_PLAIN_HELLO, Scenario::GetHero),
                (TRACING, Scenario::GetHero),
            ]
        );
        let keys = |i: usize| (lineup.prices[i].on.key, lineup.prices[i].off.key);
        assert_eq!(keys(2), ("hello-hero-host", "hello-wasmtime-like"));
        assert_eq!(keys(3), ("hello-hero-host", "hello-wasmtime"));
        assert_eq!(keys(4), ("hero-host", "hello-wasmtime"));
        let scenarios: Vec<(Scenario, Scenario)> = lineup
            .prices
            .iter()
            .map(|p| (p.scenario, p.off_scenario))
            .collect();
        assert_eq!(scenarios[4], (Scenario::GetHero, Scenario::Hello));
        assert!(
            scenarios
                .iter()
                .enumerate()
                .all(|(i, (on, off))| i == 4 || on == off)
        );
        let tracing = &lineup.prices[5];
        let sink = tracing.sink.as_ref().unwrap();
        let endpoint = format!("http://{}", sink.listen);
        assert!(
            tracing
                .on
                .launch
                .env
                .contains(&("OTEL_EXPORTER_OTLP_ENDPOINT".into(), endpoint))
        );
        assert!(tracing.off.launch.env.is_empty());
        assert_eq!(tracing.off.key, "hero-host");
        assert_ne!(tracing.on.launch.listen, tracing.off.launch.listen);
        assert!(tracing.skip.is_none());
    }

    #[test]
    fn fastapi_is_priced_on_the_small_list_and_on_post_when_it_runs() {
        let dir = std::env::temp_dir().join(format!("hero-bench-fastapi-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (python, app) = (dir.join("python"), dir.join("main.py"));
        std::fs::write(&python, b"").unwrap();
        std::fs::write(&app, b"").unwrap();
        let (python, app) = (python.display().to_string(), app.display().to_string());
        let extra = [
            "--python",
            &python,
            "--fastapi-app",
            &app,
            "--seed-count",
            "500",
        ];
        let lineup = lineup_of(&extra, Ok(()));
        std::fs::remove_dir_all(&dir).unwrap();
        let fastapi: Vec<(Scenario, &str, &str)> = lineup
            .prices
            .iter()
            .filter(|p| p.what == OVER_FASTAPI)
            .map(|p| (p.scenario, p.on.key, p.off.key))
            .collect();
        assert_eq!(
            fastapi,
            [
                (Scenario::GetHero, "hero-host", "fastapi"),
                (Scenario::List { stored: 500 }, "hero-host", "fastapi"),
                (Scenario::PostHero, "hero-host", "fastapi"),
            ]
        );
    }

    #[test]
    fn tracing_unsupported_is_planned_as_skipped_and_only_filters_the_rest() {
        let lineup = lineup_of(&["--only", "hero-host"], Err("no OTLP".into()));
        assert_eq!(lineup.contenders.len(), 1);
        assert_eq!(lineup.prices.len(), 1);
        assert_eq!(lineup.prices[0].skip.as_deref(), Some("no OTLP"));
    }

    #[test]
    fn tracing_goes_to_the_sink_sampled_at_one_in_ten() {
        let env = tracing_env(([127, 0, 0, 1], 18200).into());
        let value = |name| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
        assert_eq!(
            value("OTEL_EXPORTER_OTLP_ENDPOINT"),
            Some("http://127.0.0.1:18200")
        );
        assert_eq!(value("OTEL_TRACES_SAMPLER"), Some("traceidratio"));
        assert_eq!(value("OTEL_TRACES_SAMPLER_ARG"), Some("0.1"));
        assert_eq!(value("OTEL_EXPORTER_OTLP_PROTOCOL"), Some("http/protobuf"));
    }

    #[test]
    fn tracing_is_priced_only_when_the_help_names_the_endpoint_variable() {
        assert!(mentions_otlp("  [env: OTEL_EXPORTER_OTLP_ENDPOINT=]"));
        assert!(!mentions_otlp(
            "--metrics <on|off>\n  [env: HERO_HOST_METRICS=]"
        ));
    }
}
