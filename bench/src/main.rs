//! `hero-bench`: the benchmark rig of hero-host.
//!
//! - `hero-bench run` starts every contender in turn, drives it, and prints and
//!   saves the comparison table (`bench/run` builds everything and calls it);
//! - `hero-bench load` is the closed-loop HTTP/1.1 load generator;
//! - `hero-bench alternate` loads two servers in short turns, to price what
//!   one has and the other lacks;
//! - `hero-bench seed` creates heroes and writes their ids for `load`;
//! - `hero-bench hello` is the bare hyper hello server, the ceiling;
//! - `hero-bench sink` is a stand-in OTLP/HTTP collector that counts what it
//!   gets, for pricing trace export.

mod client;
mod contender;
mod hello;
mod lineup;
mod load;
mod log_count;
mod machine;
mod price;
mod report;
mod results;
mod run;
mod runner;
mod scenario;
mod server;
mod sink;
mod spin;
mod targets;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use hyper::Method;
use hyper::header::{HeaderName, HeaderValue};

/// Benchmark hero-host against `wasmtime serve`, FastAPI and bare hyper.
#[derive(Debug, Parser)]
#[command(name = "hero-bench", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Measure every contender and print the table (see bench/README.md).
    Run(Box<run::RunArgs>),
    /// Drive one server with a closed-loop load and print what it measured
    /// as JSON.
    Load(Box<LoadArgs>),
    /// Load two servers in short turns (A B B A …, each side's connections
    /// kept open) and print both reports as a JSON array.
    Alternate(AlternateArgs),
    /// Create heroes with `POST /heroes` and write their ids to a file.
    Seed(SeedArgs),
    /// Serve "Hello, world!\n" with bare hyper.
    Hello {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:3000")]
        listen: SocketAddr,
    },
    /// Answer 200 to every POST (OTLP/HTTP), counting requests and bytes;
    /// `GET /stats` reports them as JSON.
    Sink {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:4318")]
        listen: SocketAddr,
    },
}

/// Flags of `hero-bench load`.
#[derive(Debug, clap::Args)]
struct LoadArgs {
    /// The server's address.
    #[arg(long)]
    addr: SocketAddr,
    /// Request method.
    #[arg(long, default_value = "GET")]
    method: Method,
    /// Path and query; `{id}` is replaced by ids from `--ids`.
    #[arg(long, default_value = "/")]
    path: String,
    /// JSON request body; `{n}` is replaced by a request counter.
    #[arg(long)]
    body: Option<String>,
    /// A header sent with every request, `name: value` (repeatable).
    #[arg(long = "header", value_parser = load::parse_header)]
    headers: Vec<(HeaderName, HeaderValue)>,
    /// A header in which every request names its connection's own address
    /// (`ip:port`), as a proxy would name the client.
    #[arg(long)]
    client_addr_header: Option<HeaderName>,
    /// File of ids, one a line (as `hero-bench seed` writes it).
    #[arg(long)]
    ids: Option<PathBuf>,
    /// Connections, each with one request in flight.
    #[arg(long, default_value = "32")]
    concurrency: usize,
    /// Load before measuring.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    warmup: Duration,
    /// Measured load.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Also scrape this address (e.g. the admin port) sequentially while the
    /// load runs; the load goes on until every scrape is done.
    #[arg(long)]
    scrape_addr: Option<SocketAddr>,
    /// Path to scrape.
    #[arg(long, default_value = "/metrics")]
    scrape_path: String,
    /// Scrapes to measure.
    #[arg(long, default_value = "200")]
    scrapes: usize,
    /// Pause between scrapes.
    #[arg(long, default_value = "20ms", value_parser = humantime::parse_duration)]
    scrape_interval: Duration,
}

/// Flags of `hero-bench alternate`.
#[derive(Debug, clap::Args)]
struct AlternateArgs {
    /// How long one side is loaded before the other takes its turn.
    #[arg(long, default_value = "250ms", value_parser = humantime::parse_duration)]
    turn: Duration,
    /// The first side's `hero-bench load` flags, as a JSON array of strings
    /// (`--warmup` and `--duration` are taken from it).
    #[arg(long)]
    first: String,
    /// The second side's, likewise.
    #[arg(long)]
    second: String,
    /// The second side takes the first turn (B A A B …), not the first.
    #[arg(long)]
    second_goes_first: bool,
}

/// `hero-bench load`'s flags alone, to parse one side of an alternation.
#[derive(Debug, Parser)]
#[command(name = "load")]
struct LoadOnly {
    #[command(flatten)]
    load: LoadArgs,
}

impl LoadArgs {
    /// The load these flags describe (reading the ids file).
    fn spec(self) -> anyhow::Result<load::LoadSpec> {
        let ids = match &self.ids {
            Some(path) => load::read_ids(path)?,
            None => Vec::new(),
        };
        Ok(load::LoadSpec {
            addr: self.addr,
            method: self.method,
            path: self.path,
            body: self.body,
            headers: self.headers,
            client_addr_header: self.client_addr_header,
            ids,
            concurrency: self.concurrency,
            warmup: self.warmup,
            duration: self.duration,
            scrape: self.scrape_addr.map(|addr| load::ScrapeSpec {
                addr,
                path: self.scrape_path,
                count: self.scrapes,
                interval: self.scrape_interval,
            }),
        })
    }

    /// One side of an alternation, from its flags as a JSON array.
    fn side(which: &str, json: &str) -> anyhow::Result<load::LoadSpec> {
        let flags: Vec<String> = serde_json::from_str(json)
            .with_context(|| format!("--{which}: not a JSON array of strings"))?;
        let parsed = LoadOnly::try_parse_from(std::iter::once("load".to_owned()).chain(flags))
            .with_context(|| format!("--{which}"))?;
        parsed.load.spec()
    }
}

/// Flags of `hero-bench seed`.
#[derive(Debug, clap::Args)]
struct SeedArgs {
    /// The server's address.
    #[arg(long)]
    addr: SocketAddr,
    /// Heroes to create.
    #[arg(long, default_value = "10000")]
    count: usize,
    /// Connections.
    #[arg(long, default_value = "32")]
    concurrency: usize,
    /// Body of each `POST /heroes`; `{n}` is replaced by a counter.
    #[arg(long, default_value = scenario::HERO_BODY)]
    body: String,
    /// Where to write the ids.
    #[arg(long)]
    out: PathBuf,
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Run(args) => run::run(*args),
        Command::Load(args) => {
            let spec = (*args).spec()?;
            let report = single_thread()?.block_on(load::run(spec))?;
            println!("{}", serde_json::to_string(&report)?);
            Ok(())
        }
        Command::Alternate(args) => {
            let specs = [
                LoadArgs::side("first", &args.first)?,
                LoadArgs::side("second", &args.second)?,
            ];
            let first = usize::from(args.second_goes_first);
            let reports = single_thread()?.block_on(load::alternate(specs, args.turn, first))?;
            println!("{}", serde_json::to_string(&reports)?);
            Ok(())
        }
        Command::Seed(args) => {
            let report = single_thread()?.block_on(load::seed(
                args.addr,
                &args.body,
                args.count,
                args.concurrency,
                &args.out,
            ))?;
            println!("{}", serde_json::to_string(&report)?);
            Ok(())
        }
        Command::Hello { listen } => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
            .block_on(hello::serve(listen)),
        Command::Sink { listen } => single_thread()?
            .block_on(async { sink::serve(tokio::net::TcpListener::bind(listen).await?).await }),
    }
}

/// The load generator's runtime: one thread, so it uses one core.
fn single_thread() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}
