//! Turning `hero-host up`'s flags into a checked configuration: the manifest
//! and runtime config loaded, the state directory chosen, every limit in the
//! unit its user needs. Everything here is checked before any port is bound;
//! an error is bad configuration (exit 64).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, anyhow, ensure};

use crate::cli::UpArgs;
use crate::manifest::Manifest;
use crate::request::Limits;
use crate::request::body::BodyTiming;
use crate::runtime::Settings;
use crate::runtime_config::RuntimeConfig;
use crate::server::ConnectionLimits;
use crate::server::connection::head::{HeadLimits, MAX_HEADERS_CEILING};
use crate::telemetry::metrics::ServiceIdentity;
use crate::telemetry::traces::{TraceExport, config as otel};
use crate::variables::AppVariables;

/// Connections the public listener holds open at once.
pub const MAX_CONNECTIONS: usize = 10_000;

/// The largest request head accepted: above it hyper would answer an
/// over-long URI itself, as 414 without our body.
pub const MAX_HEAD_SIZE_CEILING: u64 = 64 * 1024;

/// Instances beyond the concurrency limit: idle ones waiting for reuse and
/// ones finishing their last response need room too: as many spares as
/// concurrent requests, at least [`MIN_SPARE_INSTANCES`] and at most this
/// many. A small limit keeps the pool's address-space reservation small
/// (every instance slot reserves its memories' full 4 GiB), which lets tools
/// with a smaller address space, such as valgrind, run the host.
const SPARE_INSTANCES: u32 = 64;

/// The fewest spare instances, whatever the concurrency limit.
const MIN_SPARE_INSTANCES: u32 = 4;

/// The instance slots the pool reserves for `max_concurrent_requests`.
fn max_instances(max_concurrent_requests: u32) -> u32 {
    let spares = max_concurrent_requests.clamp(MIN_SPARE_INSTANCES, SPARE_INSTANCES);
    max_concurrent_requests.saturating_add(spares)
}

/// Everything `up` runs with.
#[derive(Debug)]
pub struct HostConfig {
    /// The application.
    pub manifest: Manifest,
    /// The runtime configuration (defaults when no file was given).
    pub runtime_config: RuntimeConfig,
    /// Where the SQLite store and the compiled-component cache live.
    pub state_dir: PathBuf,
    /// Run the components' build commands first.
    pub build: bool,
    /// The public address.
    pub listen: SocketAddr,
    /// The admin address.
    pub admin_listen: SocketAddr,
    /// `--key-value` seeds for the `default` store.
    pub key_values: Vec<(String, String)>,
    /// The application variables' values.
    pub variables: AppVariables,
    /// `--sqlite` statements, run before serving.
    pub sqlite_statements: Vec<String>,
    /// How instances run.
    pub runtime: Settings,
    /// Limits checked before the guest runs.
    pub request_limits: Limits,
    /// Limits of each connection.
    pub connection_limits: ConnectionLimits,
    /// How long in-flight requests may take to finish at shutdown.
    pub shutdown_grace: Duration,
    /// Who we are, for `target_info`.
    pub identity: ServiceIdentity,
    /// Whether metrics are recorded.
    pub metrics: bool,
    /// Where traces go, when the `OTEL_*` variables turn tracing on.
    pub traces: Option<TraceExport>,
    /// `OTEL_RESOURCE_ATTRIBUTES`, for the traces' resource.
    pub resource_attributes: Vec<(String, String)>,
}

impl HostConfig {
    /// Loads and checks everything the flags and the `OTEL_*` variables of
    /// the process environment name.
    pub fn from_args(args: UpArgs) -> anyhow::Result<Self> {
        Self::from_args_and_env(args, |name| std::env::var(name).ok())
    }

    /// As [`HostConfig::from_args`], reading variables through `env`.
    pub fn from_args_and_env(
        args: UpArgs,
        env: impl Fn(&str) -> Option<String>,
    ) -> anyhow::Result<Self> {
        let otel = otel::from_env(env)?;
        let mut manifest = Manifest::load(&args.manifest.path)?;
        let runtime_config = match &args.runtime_config_file {
            Some(path) => RuntimeConfig::load(path)?,
            None => RuntimeConfig::default(),
        };
        let variables = crate::variables::configure(
            &mut manifest,
            &runtime_config.variables_providers,
            &args.variables,
        )?;
        manifest.add_env(&args.env);
        let state_dir = state_dir(args.state_dir.as_deref(), &runtime_config, &manifest)?;
        check_limits(&args)?;
        let max_concurrent_requests = args.max_concurrent_requests.get();
        let resource_instance = otel
            .resource
            .iter()
            .find(|(key, _)| key == "service.instance.id")
            .map(|(_, value)| value.clone());
        let identity = ServiceIdentity {
            name: args
                .service_name
                .or(otel.service_name)
                .unwrap_or_else(|| manifest.application.name.clone()),
            version: manifest.application.version.clone(),
            instance_id: args
                .service_instance_id
                .or(resource_instance)
                .unwrap_or_else(host_name),
        };
        Ok(HostConfig {
            runtime: Settings {
                request_timeout: args.request_timeout,
                max_instance_memory: args.max_instance_memory,
                max_reuse: args.max_instance_reuse_count.get() as usize,
                max_concurrent_reuse: args.max_instance_concurrent_reuse_count.get() as usize,
                idle_instance_timeout: args.idle_instance_timeout,
                max_instances: max_instances(max_concurrent_requests),
            },
            request_limits: Limits {
                max_request_body: args.max_request_body_size,
                max_uri_length: usize::try_from(args.max_uri_length).unwrap_or(usize::MAX),
                max_concurrent_requests: max_concurrent_requests as usize,
                body_timing: BodyTiming {
                    timeout: args.request_body_timeout,
                    min_rate: args.request_body_min_rate,
                },
            },
            connection_limits: ConnectionLimits {
                header_read_timeout: args.header_read_timeout,
                head: HeadLimits {
                    max_head_size: args.max_request_head_size as usize,
                    max_headers: args.max_request_headers,
                    max_body: args.max_request_body_size,
                },
                max_connections: MAX_CONNECTIONS,
                max_idle_connections: args.max_idle_connections.get() as usize,
                response_write_timeout: args.response_write_timeout,
            },
            manifest,
            runtime_config,
            state_dir,
            build: args.build,
            listen: args.listen,
            admin_listen: args.admin_listen,
            key_values: args.key_values,
            variables,
            sqlite_statements: args.sqlite_statements,
            shutdown_grace: args.shutdown_grace,
            identity,
            metrics: args.metrics,
            traces: otel.traces,
            resource_attributes: otel.resource,
        })
    }

    /// Checks that every served component's wasm file exists (after any
    /// build).
    pub fn check_sources(&self) -> anyhow::Result<()> {
        for component in self.manifest.served_components() {
            if !component.source.is_file() {
                return Err(anyhow!(
                    "component `{}`: its source {} does not exist; build it first \
                     (`hero-host build`, or `up --build`)",
                    component.id,
                    component.source.display()
                ));
            }
        }
        Ok(())
    }
}

/// The limits no flag parser can check alone.
fn check_limits(args: &UpArgs) -> anyhow::Result<()> {
    ensure!(
        args.max_request_head_size <= MAX_HEAD_SIZE_CEILING,
        "--max-request-head-size {} is over the largest supported head, {} bytes (64KiB)",
        args.max_request_head_size,
        MAX_HEAD_SIZE_CEILING
    );
    ensure!(
        (1..=MAX_HEADERS_CEILING).contains(&args.max_request_headers),
        "--max-request-headers {} must be between 1 and {MAX_HEADERS_CEILING}",
        args.max_request_headers
    );
    let timeouts = [
        ("--header-read-timeout", args.header_read_timeout),
        ("--request-timeout", args.request_timeout),
        ("--request-body-timeout", args.request_body_timeout),
        ("--response-write-timeout", args.response_write_timeout),
    ];
    for (flag, timeout) in timeouts {
        ensure!(!timeout.is_zero(), "{flag} must be above zero");
    }
    Ok(())
}

/// `--state-dir`, else the runtime config's `state_dir`, else `.spin` next to
/// the manifest (as `spin up`); created if missing.
fn state_dir(
    flag: Option<&Path>,
    runtime_config: &RuntimeConfig,
    manifest: &Manifest,
) -> anyhow::Result<PathBuf> {
    let dir = match (flag, &runtime_config.state_dir) {
        (Some(dir), _) => std::path::absolute(dir)?,
        (None, Some(dir)) => dir.clone(),
        (None, None) => manifest.dir.join(".spin"),
    };
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create the state directory {}", dir.display()))?;
    Ok(dir)
}

/// The host name, for `service.instance.id` when none is given.
fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};
    use crate::manifest::tests::one_component_manifest;

    /// An app directory holding the manifest, and `up` flags for it.
    fn config(dir: &Path, flags: &[&str]) -> anyhow::Result<HostConfig> {
        config_with_env(dir, flags, &[])
    }

    /// As [`config`], with these variables as the environment.
    fn config_with_env(
        dir: &Path,
        flags: &[&str],
        env: &[(&str, &str)],
    ) -> anyhow::Result<HostConfig> {
        let text = one_component_manifest("name = \"demo\"\nversion = \"1.2.3\"", "/...", "demo");
        std::fs::write(dir.join("spin.toml"), text).unwrap();
        let manifest = dir.join("spin.toml");
        let mut argv = vec!["hero-host", "up", "-f", manifest.to_str().unwrap()];
        argv.extend_from_slice(flags);
        let Command::Up(args) = Cli::try_parse_from(argv)?.command else {
            unreachable!("parsed `up`")
        };
        HostConfig::from_args_and_env(*args, |name| {
            env.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    #[test]
    fn defaults_follow_the_manifest_and_spin() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path(), &["--service-instance-id", "pod-1"]).unwrap();
        assert_eq!(config.state_dir, dir.path().join(".spin"));
        assert!(config.state_dir.is_dir(), "created");
        assert_eq!(config.identity.name, "demo");
        assert_eq!(config.identity.version, "1.2.3");
        assert_eq!(config.identity.instance_id, "pod-1");
        assert_eq!(config.runtime.max_instances, 1000 + SPARE_INSTANCES);
        assert_eq!(config.request_limits.max_uri_length, 8 * 1024);
        assert_eq!(config.connection_limits.head.max_head_size, 64 * 1024);
        assert_eq!(config.connection_limits.head.max_body, 1 << 20);
        assert_eq!(config.connection_limits.max_idle_connections, 1000);
        assert_eq!(
            config.connection_limits.response_write_timeout,
            Duration::from_secs(30)
        );
        assert_eq!(
            config.request_limits.body_timing,
            BodyTiming {
                timeout: Duration::from_secs(10),
                min_rate: 500
            }
        );
        assert_eq!(config.connection_limits.max_connections, MAX_CONNECTIONS);
    }

    #[test]
    fn the_state_dir_flag_beats_the_runtime_config() {
        let dir = tempfile::tempdir().unwrap();
        let runtime_config = dir.path().join("rc.toml");
        std::fs::write(&runtime_config, "state_dir = \"from-file\"\n").unwrap();
        let rc = runtime_config.to_str().unwrap();
        let from_file = config(dir.path(), &["--runtime-config-file", rc]).unwrap();
        assert_eq!(from_file.state_dir, dir.path().join("from-file"));
        let flag = dir.path().join("flag");
        let from_flag = config(
            dir.path(),
            &[
                "--runtime-config-file",
                rc,
                "--state-dir",
                flag.to_str().unwrap(),
            ],
        )
        .unwrap();
        assert_eq!(from_flag.state_dir, flag);
    }

    #[test]
    fn limits_are_carried_in_their_units() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(
            dir.path(),
            &[
                "--max-concurrent-requests",
                "10",
                "--max-instance-concurrent-reuse-count",
                "4",
                "--max-request-body-size",
                "2KiB",
                "--request-timeout",
                "500ms",
            ],
        )
        .unwrap();
        assert_eq!(config.request_limits.max_concurrent_requests, 10);
        assert_eq!(config.runtime.max_instances, 10 + 10);
        assert_eq!(config.runtime.max_concurrent_reuse, 4);
        assert_eq!(config.request_limits.max_request_body, 2048);
        assert_eq!(config.runtime.request_timeout, Duration::from_millis(500));
    }

    #[test]
    fn spare_instances_follow_the_concurrency_limit_within_bounds() {
        let dir = tempfile::tempdir().unwrap();
        for (limit, instances) in [("1", 1 + 4), ("30", 30 + 30), ("500", 500 + 64)] {
            let config = config(dir.path(), &["--max-concurrent-requests", limit]).unwrap();
            assert_eq!(config.runtime.max_instances, instances, "limit {limit}");
        }
    }

    #[test]
    fn refuses_a_head_limit_over_64_kib_and_zero_timeouts() {
        let dir = tempfile::tempdir().unwrap();
        let error = config(dir.path(), &["--max-request-head-size", "65KiB"]).unwrap_err();
        assert!(format!("{error:#}").contains("64KiB"), "{error:#}");
        for flag in [
            "--request-timeout",
            "--header-read-timeout",
            "--request-body-timeout",
            "--response-write-timeout",
        ] {
            let error = config(dir.path(), &[flag, "0s"]).unwrap_err();
            assert_eq!(format!("{error:#}"), format!("{flag} must be above zero"));
        }
    }

    #[test]
    fn refuses_more_than_256_headers_and_none() {
        let dir = tempfile::tempdir().unwrap();
        for count in ["0", "257"] {
            let error = config(dir.path(), &["--max-request-headers", count]).unwrap_err();
            assert!(
                format!("{error:#}").contains("between 1 and 256"),
                "{error:#}"
            );
        }
        let config = config(dir.path(), &["--max-request-headers", "256"]).unwrap();
        assert_eq!(config.connection_limits.head.max_headers, 256);
    }

    #[test]
    fn body_write_and_idle_limits_are_carried_in_their_units() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(
            dir.path(),
            &[
                "--request-body-timeout",
                "3s",
                "--request-body-min-rate",
                "2KiB",
                "--response-write-timeout",
                "250ms",
                "--max-idle-connections",
                "5",
            ],
        )
        .unwrap();
        assert_eq!(
            config.request_limits.body_timing,
            BodyTiming {
                timeout: Duration::from_secs(3),
                min_rate: 2048
            }
        );
        assert_eq!(
            config.connection_limits.response_write_timeout,
            Duration::from_millis(250)
        );
        assert_eq!(config.connection_limits.max_idle_connections, 5);
    }

    #[test]
    fn tracing_is_off_unless_an_otlp_endpoint_is_set() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path(), &[]).unwrap();
        assert!(config.traces.is_none());
        let config = config_with_env(
            dir.path(),
            &[],
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
                ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
                ("OTEL_TRACES_SAMPLER_ARG", "0.1"),
            ],
        )
        .unwrap();
        let traces = config.traces.expect("tracing on");
        assert_eq!(traces.endpoint, "http://collector:4318/v1/traces");
        assert_eq!(traces.sampler.ratio, 0.1);
    }

    #[test]
    fn the_service_name_flag_beats_otel_service_name_which_beats_the_app() {
        let dir = tempfile::tempdir().unwrap();
        let env = [
            ("OTEL_SERVICE_NAME", "from-otel"),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "service.instance.id=pod-7,team=x",
            ),
        ];
        let config = config_with_env(dir.path(), &[], &env).unwrap();
        assert_eq!(config.identity.name, "from-otel");
        assert_eq!(config.identity.instance_id, "pod-7");
        assert_eq!(config.resource_attributes.len(), 2);
        let flagged = config_with_env(dir.path(), &["--service-name", "flag"], &env).unwrap();
        assert_eq!(flagged.identity.name, "flag");
    }

    #[test]
    fn bad_otel_variables_are_configuration_errors_naming_the_variable() {
        let dir = tempfile::tempdir().unwrap();
        let error = config_with_env(
            dir.path(),
            &[],
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
                ("OTEL_TRACES_SAMPLER_ARG", "lots"),
                ("OTEL_TRACES_SAMPLER", "traceidratio"),
            ],
        )
        .unwrap_err();
        assert!(
            format!("{error:#}").starts_with("OTEL_TRACES_SAMPLER_ARG=\"lots\""),
            "{error:#}"
        );
    }

    #[test]
    fn a_missing_component_source_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path(), &[]).unwrap();
        let error = config.check_sources().unwrap_err().to_string();
        assert!(
            error.contains("component `demo`") && error.contains("demo.wasm"),
            "{error}"
        );
        std::fs::write(dir.path().join("demo.wasm"), b"\0asm").unwrap();
        config.check_sources().unwrap();
    }
}
