//! `hero-host`: serves the Spin HTTP components of a `spin.toml` on
//! wasmtime, with Prometheus metrics on an admin port and one JSON log line
//! per request.

mod builder;
mod capabilities;
mod cli;
mod config;
mod fd_limit;
mod guest_stream;
mod kv;
mod labeled;
mod manifest;
mod otel;
mod outbound;
mod request;
mod routes;
mod runtime;
mod runtime_config;
mod server;
mod shutdown;
mod spin_v2;
mod sqlite;
mod telemetry;
#[cfg(test)]
mod testing;
mod up;
mod variables;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{BuildArgs, Cli, Command, UpArgs};
use crate::manifest::Manifest;

/// jemalloc serves the host's allocations. A request allocates a few hundred
/// times (hyper, wasmtime's host calls, the strings and lists it lowers into
/// the guest), and glibc's allocator spent about 24k instructions of a 232k
/// hello request on them, much of it in `_int_free` once its per-thread
/// cache of each size was full; with jemalloc the request costs 213k
/// (callgrind, `bench/profile`). jemalloc also purges every arena on demand,
/// whichever thread freed into it, which gives a crowd's memory back (see
/// `server::memory`).
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// How many tasks a runtime thread runs before it looks for new socket
/// events and expired timers when it has not run out of tasks (tokio's
/// default is 61). A request hands its work back and forth between its
/// connection's task and its instance's task a few times before the
/// response is written; each time, the task goes to the back of the
/// thread's queue. Looking for events every 61 tasks puts every connection
/// whose next request has arrived ahead of those hand-overs, so under load
/// requests already started wait behind ones not yet started, and a crowd
/// of 32 connections sees responses stall for a round of the queue (3-4 ms
/// on one core). Finishing what has started before admitting more cut
/// hello's p99 under 32 connections from 6.4 to 4.6 ms and
/// `GET /heroes/{id}`'s from 7.1 to 5.5 ms (one core, `bench/README.md`).
/// Events still wait at most this many tasks; a thread that runs out of
/// tasks looks at once, and a spinning guest's yield waits for that look.
const IO_EVENT_INTERVAL: u32 = 4096;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Up(args) => up(*args),
        Command::Build(args) => build(&args),
    }
}

fn up(args: UpArgs) -> ExitCode {
    let (logs, guard) = match telemetry::logs::init(args.log_format, &args.log_level) {
        Ok(installed) => installed,
        Err(error) => {
            eprintln!("error: {error:#}");
            return ExitCode::from(64);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .event_interval(IO_EVENT_INTERVAL)
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(up::run(args, logs));
    // Requests are done; instances still idling for reuse need not be waited for.
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    let code = match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            let error = failure.error();
            tracing::error!(error = %format!("{error:#}"), exit_code = failure.exit_code(), "hero-host cannot start");
            eprintln!("error: {error:#}");
            ExitCode::from(failure.exit_code())
        }
    };
    // Flushes every queued log line.
    drop(guard);
    code
}

fn build(args: &BuildArgs) -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .without_time()
        .with_target(false)
        .init();
    let built = Manifest::load(&args.manifest.path)
        .map_err(|error| (64, error))
        .and_then(|manifest| builder::build(&manifest).map_err(|error| (1, error)));
    match built {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, error)) => {
            eprintln!("error: {error:#}");
            ExitCode::from(code)
        }
    }
}
