//! `hero-host up`: load and check everything before binding a port, then
//! serve until SIGTERM or SIGINT, then drain.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, anyhow};
use tokio::net::TcpListener;

use crate::cli::UpArgs;
use crate::kv::Stores;
use crate::manifest::Manifest;
use crate::routes::Router;
use crate::runtime::{Runtime, Settings};
use crate::runtime_config::{DEFAULT_STORE_LABEL, RuntimeConfig};
use crate::server::admin::{Admin, serve_admin};
use crate::server::proxy::{App, Limits};
use crate::server::{ConnectionLimits, serve_public};
use crate::telemetry::logs::LogSink;
use crate::telemetry::metrics::{Metrics, ServiceIdentity};

/// Connections the public listener holds open at once.
const MAX_CONNECTIONS: usize = 10_000;

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

fn config(error: anyhow::Error) -> Failure {
    Failure::Config(error)
}

/// Runs `hero-host up` to completion.
pub async fn run(args: UpArgs, logs: LogSink) -> Result<(), Failure> {
    open_files_limit();
    let manifest = Manifest::load(&args.manifest.path).map_err(config)?;
    let runtime_config = match &args.runtime_config_file {
        Some(path) => RuntimeConfig::load(path).map_err(config)?,
        None => RuntimeConfig::default(),
    };
    let state_dir = state_dir(&args, &runtime_config, &manifest).map_err(config)?;
    if args.build {
        crate::builder::build(&manifest).map_err(Failure::Other)?;
    }

    let served: Vec<_> = manifest.served_components().collect();
    for component in &served {
        if !component.source.is_file() {
            return Err(config(anyhow!(
                "component `{}`: its source {} does not exist; build it first (`hero-host build`, or `up --build`)",
                component.id,
                component.source.display()
            )));
        }
    }
    let used_labels = served.iter().flat_map(|c| {
        c.key_value_stores
            .iter()
            .map(move |label| (c.id.as_str(), label.as_str()))
    });
    let stores = Stores::open(&runtime_config.stores(&state_dir), used_labels).map_err(config)?;
    tracing::info!(
        manifest = %manifest.path.display(),
        application = manifest.application.name.as_str(),
        version = manifest.application.version.as_str(),
        description = manifest.application.description.as_str(),
        state_dir = %state_dir.display(),
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
    seed_default_store(&stores, &args.key_values)
        .await
        .map_err(config)?;

    let identity = ServiceIdentity {
        name: args
            .service_name
            .clone()
            .unwrap_or_else(|| manifest.application.name.clone()),
        version: manifest.application.version.clone(),
        instance_id: args.service_instance_id.clone().unwrap_or_else(host_name),
    };
    let metrics = Arc::new(Metrics::new(&identity, args.metrics).map_err(Failure::Other)?);
    let counted = logs.clone();
    metrics.observe_counter(
        "hero_host.log.dropped_lines",
        "Log lines dropped because stdout could not keep up.",
        move || counted.dropped_lines(),
    );

    let settings = Settings {
        request_timeout: args.request_timeout,
        max_instance_memory: args.max_instance_memory,
        max_reuse: args.max_instance_reuse_count.get() as usize,
        max_concurrent_reuse: args.max_instance_concurrent_reuse_count.get() as usize,
        idle_instance_timeout: args.idle_instance_timeout,
        // Every request in flight may hold an instance; idle ones waiting for
        // reuse and ones finishing their last response need room too.
        max_instances: args.max_concurrent_requests.get() + 64,
    };
    let cache_dir = state_dir.join("cache");
    let runtime =
        Runtime::new(&served, settings, &stores, &cache_dir, &logs, &metrics).map_err(config)?;
    for component in &runtime.components {
        tracing::info!(
            component = &*component.id,
            wasi = component.wasi.name(),
            compiled = if component.from_cache { "cache" } else { "now" },
            "component ready"
        );
    }
    let index: Vec<&str> = served.iter().map(|c| c.id.as_str()).collect();
    let (router, duplicates) = Router::build(&manifest.http_triggers, |id| {
        index
            .iter()
            .position(|c| *c == id)
            .expect("served components are the routed ones")
    })
    .map_err(config)?;
    for duplicate in duplicates {
        tracing::warn!(
            route = duplicate.route.as_str(),
            unreachable = duplicate.replaced.as_str(),
            serves = duplicate.effective.as_str(),
            "duplicate route: the later trigger wins"
        );
    }
    for entry in router.entries() {
        tracing::info!(
            route = &*entry.route,
            component = index[entry.component],
            "route"
        );
    }

    let public = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))
        .map_err(Failure::Other)?;
    let admin_listener = TcpListener::bind(args.admin_listen)
        .await
        .with_context(|| format!("cannot listen on {} (admin)", args.admin_listen))
        .map_err(Failure::Other)?;
    let public_addr = public.local_addr().map_err(|e| Failure::Other(e.into()))?;
    let admin_addr = admin_listener
        .local_addr()
        .map_err(|e| Failure::Other(e.into()))?;

    let draining = Arc::new(AtomicBool::new(false));
    let admin = Arc::new(Admin {
        metrics: metrics.clone(),
        stores: stores.clone(),
        draining: draining.clone(),
    });
    let (stop_admin, admin_stopped) = tokio::sync::oneshot::channel::<()>();
    let admin_task = tokio::spawn(serve_admin(admin_listener, admin, async {
        let _ = admin_stopped.await;
    }));

    let stopping = runtime.stopping();
    let app = Arc::new(App::new(
        router,
        runtime,
        metrics.clone(),
        logs.clone(),
        Limits {
            max_request_body: args.max_request_body_size,
            max_uri_length: usize::try_from(args.max_uri_length).unwrap_or(usize::MAX),
        },
        args.max_concurrent_requests.get(),
    ));
    let limits = ConnectionLimits {
        header_read_timeout: args.header_read_timeout,
        max_headers: args.max_request_headers,
        max_head_size: usize::try_from(args.max_request_head_size).unwrap_or(usize::MAX),
        max_connections: MAX_CONNECTIONS,
    };
    tracing::info!(
        address = %public_addr,
        admin_address = %admin_addr,
        url = %format_args!("http://{public_addr}"),
        metrics = %format_args!("http://{admin_addr}/metrics"),
        "serving"
    );

    let shutdown = {
        let draining = draining.clone();
        async move {
            let signal = shutdown_signal().await;
            // Readiness turns false before anything else changes.
            draining.store(true, Ordering::SeqCst);
            tracing::info!(signal, "shutting down");
        }
    };
    serve_public(public, app, limits, shutdown, args.shutdown_grace).await;
    stopping.store(true, Ordering::SeqCst);
    let _ = stop_admin.send(());
    let _ = admin_task.await;
    metrics.shutdown();
    tracing::info!("stopped");
    Ok(())
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

/// `--state-dir`, else the runtime config's `state_dir`, else `.spin` next to
/// the manifest (as `spin up`).
fn state_dir(
    args: &UpArgs,
    runtime_config: &RuntimeConfig,
    manifest: &Manifest,
) -> anyhow::Result<PathBuf> {
    let dir = match (&args.state_dir, &runtime_config.state_dir) {
        (Some(dir), _) => std::path::absolute(dir)?,
        (None, Some(dir)) => dir.clone(),
        (None, None) => manifest.dir.join(".spin"),
    };
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create the state directory {}", dir.display()))?;
    Ok(dir)
}

/// `--key-value KEY=VALUE`: written to the `default` store before serving.
async fn seed_default_store(stores: &Stores, values: &[(String, String)]) -> anyhow::Result<()> {
    if values.is_empty() {
        return Ok(());
    }
    let store = stores
        .get(DEFAULT_STORE_LABEL)
        .context("--key-value writes to the `default` store, which no component uses")?;
    for (key, value) in values {
        store
            .backend
            .set(key, value.as_bytes())
            .await
            .with_context(|| format!("--key-value {key}: cannot write to the `default` store"))?;
    }
    Ok(())
}

/// Waits for SIGTERM or SIGINT; returns its name.
async fn shutdown_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let (mut terminate, mut interrupt) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(terminate), Ok(interrupt)) => (terminate, interrupt),
        _ => {
            tracing::error!("cannot listen for signals; stopping only when killed");
            return std::future::pending().await;
        }
    };
    tokio::select! {
        _ = terminate.recv() => "SIGTERM",
        _ = interrupt.recv() => "SIGINT",
    }
}

/// The host name, for `service.instance.id` when none is given.
fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string(Path::new("/proc/sys/kernel/hostname"))
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned())
}
