//! `hero-host up`: load and check everything before binding a port, then
//! serve until SIGTERM or SIGINT, then drain.

use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::cli::UpArgs;
use crate::config::{HostConfig, MAX_CONNECTIONS};
use crate::kv::{StoreError, Stores};
use crate::outbound::OwnApp;
use crate::request::well_known::WellKnown;
use crate::request::{Recorder, RequestHandler, RouteTarget};
use crate::routes::Router;
use crate::runtime::{Environment, Runtime};
use crate::runtime_config::DEFAULT_STORE_LABEL;
use crate::server::admin::{Admin, serve_admin};
use crate::server::serve_public;
use crate::shutdown::{Phase, Shutdown};
use crate::telemetry::logs::LogSink;
use crate::telemetry::metrics::Metrics;
use crate::telemetry::traces::Traces;

/// Why `up` stopped early, and the exit code that says so.
#[derive(Debug)]
pub enum Failure {
    /// Bad configuration, manifest or component: exit 64, before any port
    /// is bound.
    Config(anyhow::Error),
    /// Anything else: exit 1.
    Other(anyhow::Error),
}

impl Failure {
    /// The process exit code.
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::Config(_) => 64,
            Failure::Other(_) => 1,
        }
    }

    /// The error.
    pub fn error(&self) -> &anyhow::Error {
        match self {
            Failure::Config(error) | Failure::Other(error) => error,
        }
    }
}

/// Runs `hero-host up` to completion.
pub async fn run(args: UpArgs, logs: LogSink) -> Result<(), Failure> {
    open_files_limit();
    let config = HostConfig::from_args(args).map_err(Failure::Config)?;
    if config.build {
        crate::builder::build(&config.manifest).map_err(Failure::Other)?;
    }
    config.check_sources().map_err(Failure::Config)?;
    let stores = open_stores(&config).await.map_err(|error| {
        if is_transient(&error) {
            Failure::Other(error)
        } else {
            Failure::Config(error)
        }
    })?;
    let databases = crate::sqlite::open_for(&config).map_err(Failure::Config)?;
    crate::variables::log_origins(&config.variables);
    let metrics = Arc::new(Metrics::new(&config.identity, config.metrics).map_err(Failure::Other)?);
    let counted = logs.clone();
    metrics.observe_counter(
        "hero_host.log.dropped_lines",
        "Log lines dropped because stdout could not keep up.",
        move || counted.dropped_lines(),
    );
    let traces = start_traces(&config).map_err(Failure::Config)?;
    traces.observe(&metrics);
    let shutdown = Shutdown::new();
    let own_app = OwnApp::default();
    let runtime = load_runtime(
        &config,
        (&stores, &databases),
        &logs,
        &metrics,
        (&shutdown, &own_app),
        traces.is_on(),
    )?;
    let router = route_table(&config, &runtime).map_err(Failure::Config)?;
    let (public, admin) = bind(&config).await.map_err(Failure::Other)?;
    if let Ok(addr) = public.local_addr() {
        own_app.listening_on(addr);
    }
    let recorder = Arc::new(Recorder {
        metrics: metrics.clone(),
        logs,
        shutdown: shutdown.clone(),
        traces: traces.clone(),
    });
    let handler = Arc::new(RequestHandler::new(
        router,
        runtime,
        recorder,
        config.request_limits,
        WellKnown::new(&config.manifest.application),
    ));
    let admin_task = tokio::spawn(serve_admin(
        admin,
        Arc::new(Admin {
            metrics: metrics.clone(),
            stores,
            shutdown: shutdown.clone(),
        }),
    ));
    tokio::spawn(stop_on_signal(shutdown.clone()));
    serve_public(
        public,
        handler,
        config.connection_limits,
        &shutdown,
        config.shutdown_grace,
    )
    .await;
    shutdown.advance(Phase::Stopped);
    let _ = admin_task.await;
    metrics.shutdown();
    // The last spans, without holding up the exit for long.
    let _ = tokio::task::spawn_blocking(move || traces.shutdown(TRACES_SHUTDOWN)).await;
    tracing::info!("stopped");
    Ok(())
}

/// How long the exit waits for the last spans to reach the collector.
const TRACES_SHUTDOWN: std::time::Duration = std::time::Duration::from_secs(3);

/// Starts exporting traces when the `OTEL_*` variables ask for it, and says
/// where they go.
fn start_traces(config: &HostConfig) -> anyhow::Result<Traces> {
    let Some(export) = &config.traces else {
        return Ok(Traces::off());
    };
    let traces = Traces::start(export, &config.identity, &config.resource_attributes)?;
    tracing::info!(
        endpoint = export.endpoint.as_str(),
        protocol = export.protocol.name(),
        sampler_ratio = export.sampler.ratio,
        parent_based = export.sampler.parent_based,
        queue_size = export.queue_size,
        "exporting traces"
    );
    Ok(traces)
}

/// Opens the key-value stores the served components use, says where they
/// are, and seeds the `default` store with `--key-value`.
async fn open_stores(config: &HostConfig) -> anyhow::Result<Stores> {
    let manifest = &config.manifest;
    let used = manifest.served_components().flat_map(|c| {
        c.key_value_stores
            .iter()
            .map(move |label| (c.id.as_str(), label.as_str()))
    });
    let stores = Stores::open(&config.runtime_config.stores(&config.state_dir), used)?;
    tracing::info!(
        manifest = %manifest.path.display(),
        application = manifest.application.name.as_str(),
        version = manifest.application.version.as_str(),
        description = manifest.application.description.as_str(),
        state_dir = %config.state_dir.display(),
        "application loaded"
    );
    for store in stores.iter() {
        tracing::info!(
            store = &*store.label,
            backend = store.backend.kind(),
            location = store.location.as_str(),
            "key-value store"
        );
    }
    if !config.key_values.is_empty() {
        let store = stores
            .get(DEFAULT_STORE_LABEL)
            .context("--key-value writes to the `default` store, which no component uses")?;
        for (key, value) in &config.key_values {
            store
                .backend
                .set(key, value.as_bytes())
                .await
                .with_context(|| {
                    format!("--key-value {key}: cannot write to the `default` store")
                })?;
        }
    }
    Ok(stores)
}

/// Whether opening the stores failed for a reason that may pass: a database
/// another process kept locked past the wait, or a Redis server that did not
/// answer a `--key-value` write. Worth a restart, not a configuration error.
fn is_transient(error: &anyhow::Error) -> bool {
    error
        .chain()
        .filter_map(|cause| cause.downcast_ref::<StoreError>())
        .any(|cause| cause.is_busy() || matches!(cause, StoreError::Redis(_)))
}

/// Compiles (or loads) and pre-instantiates every served component.
fn load_runtime(
    config: &HostConfig,
    (stores, databases): (&Stores, &crate::sqlite::Databases),
    logs: &LogSink,
    metrics: &Arc<Metrics>,
    (shutdown, own_app): (&Shutdown, &OwnApp),
    traced: bool,
) -> Result<Runtime, Failure> {
    let served: Vec<_> = config.manifest.served_components().collect();
    let environment = Environment {
        stores,
        databases,
        variables: &config.variables,
        cache_dir: &config.state_dir.join("cache"),
        logs,
        metrics,
        shutdown,
        traced,
        own_app,
    };
    let runtime =
        Runtime::new(&served, config.runtime.clone(), &environment).map_err(Failure::Config)?;
    for component in &runtime.components {
        tracing::info!(
            component = &*component.id,
            wasi = component.wasi.name(),
            compiled = if component.from_cache { "cache" } else { "now" },
            "component ready"
        );
    }
    // Compiling left the allocator holding memory no one uses any more.
    crate::server::memory::return_free_memory();
    Ok(runtime)
}

/// The route table, with duplicates warned about and every route logged.
fn route_table(config: &HostConfig, runtime: &Runtime) -> anyhow::Result<Router<RouteTarget>> {
    let (router, duplicates) = RouteTarget::table(&config.manifest.http_triggers, runtime)?;
    for duplicate in duplicates {
        tracing::warn!(
            route = duplicate.route.as_str(),
            unreachable = duplicate.replaced.as_str(),
            serves = duplicate.effective.as_str(),
            "duplicate route: the later trigger wins"
        );
    }
    for target in router.targets() {
        tracing::info!(
            route = &*target.served.route,
            component = &*target.served.component,
            "route"
        );
    }
    Ok(router)
}

/// Binds the public and admin listeners, and says where they are.
async fn bind(config: &HostConfig) -> anyhow::Result<(TcpListener, TcpListener)> {
    let public = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let admin = TcpListener::bind(config.admin_listen)
        .await
        .with_context(|| format!("cannot listen on {} (admin)", config.admin_listen))?;
    let public_addr = public.local_addr()?;
    let admin_addr = admin.local_addr()?;
    tracing::info!(
        address = %public_addr,
        admin_address = %admin_addr,
        url = %format_args!("http://{public_addr}"),
        metrics = %format_args!("http://{admin_addr}/metrics"),
        "serving"
    );
    Ok((public, admin))
}

/// Raises the open-files limit and says what it is; a limit below the
/// connection cap is worth a warning, not a refusal to start.
fn open_files_limit() {
    let shown =
        |limit: Option<u64>| limit.map_or_else(|| "unlimited".to_owned(), |n| n.to_string());
    match crate::fd_limit::raise_open_files_limit() {
        Ok(limit) => {
            tracing::info!(
                open_files_limit = %shown(limit.now),
                started_with = %shown(limit.before),
                "open files limit"
            );
            if limit.now.is_some_and(|now| now < MAX_CONNECTIONS as u64) {
                tracing::warn!(
                    open_files_limit = %shown(limit.now),
                    max_connections = MAX_CONNECTIONS,
                    "the open files limit is below the connection cap: past it, new \
                     connections wait (raise the hard limit, e.g. ulimit -Hn)"
                );
            }
        }
        Err(error) => tracing::warn!(error = %error, "cannot raise the open files limit"),
    }
}

/// Starts draining on SIGTERM or SIGINT.
async fn stop_on_signal(shutdown: Shutdown) {
    use tokio::signal::unix::{SignalKind, signal};
    let (mut terminate, mut interrupt) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(terminate), Ok(interrupt)) => (terminate, interrupt),
        _ => {
            tracing::error!("cannot listen for signals; stopping only when killed");
            return;
        }
    };
    let signal = tokio::select! {
        _ = terminate.recv() => "SIGTERM",
        _ = interrupt.recv() => "SIGINT",
    };
    // Readiness turns false before anything else changes.
    shutdown.advance(Phase::Draining);
    tracing::info!(signal, "shutting down");
}
