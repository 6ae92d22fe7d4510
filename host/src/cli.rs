//! The command line: `hero-host up` and `hero-host build`, flags mirroring
//! `spin up`, each with a `HERO_HOST_<FLAG>` environment variable.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Args, Parser, Subcommand};

use crate::telemetry::logs::LogFormat;

/// Serve Spin HTTP components on wasmtime, with Prometheus metrics and one JSON
/// log line per request.
#[derive(Debug, Parser)]
#[command(name = "hero-host", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the application's HTTP components (like `spin up`).
    Up(Box<UpArgs>),
    /// Run each component's build command (like `spin build`).
    Build(BuildArgs),
}

/// The manifest flag both subcommands take.
#[derive(Debug, Args)]
pub struct ManifestArg {
    /// The application manifest, or a directory holding `spin.toml`.
    #[arg(
        short = 'f',
        long = "from",
        visible_alias = "file",
        env = "HERO_HOST_FROM",
        default_value = "spin.toml"
    )]
    pub path: PathBuf,
}

/// Flags of `hero-host build`.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The application.
    #[command(flatten)]
    pub manifest: ManifestArg,
}

/// Flags of `hero-host up`.
#[derive(Debug, Args)]
#[command(after_long_help = UP_AFTER_HELP)]
pub struct UpArgs {
    /// The application.
    #[command(flatten)]
    pub manifest: ManifestArg,

    /// Run the components' build commands before serving.
    #[arg(long, env = "HERO_HOST_BUILD")]
    pub build: bool,

    /// Address of the public HTTP listener.
    #[arg(long, env = "HERO_HOST_LISTEN", default_value = "127.0.0.1:3000")]
    pub listen: SocketAddr,

    /// Address of the admin listener: /metrics, /healthz, /readyz. Never
    /// reachable on the public port.
    #[arg(long, env = "HERO_HOST_ADMIN_LISTEN", default_value = "127.0.0.1:9464")]
    pub admin_listen: SocketAddr,

    /// Spin runtime configuration (TOML): key-value backends such as
    /// `[key_value_store.default] type = "redis" url = "redis://..."`,
    /// SQLite databases (`[sqlite_database.<label>]`) and variables
    /// providers (`[[variables_provider]]`, type `env` or `static`).
    #[arg(long, env = "HERO_HOST_RUNTIME_CONFIG_FILE")]
    pub runtime_config_file: Option<PathBuf>,

    /// Directory for state: the default SQLite key-value store
    /// (`sqlite_key_value.db`, as `spin up` lays it out) and the compiled
    /// component cache (`cache/`). Default: `state_dir` of the runtime config
    /// file, else `.spin` next to the manifest.
    #[arg(long, env = "HERO_HOST_STATE_DIR")]
    pub state_dir: Option<PathBuf>,

    /// Set a key in the `default` key-value store before serving (repeatable).
    #[arg(long = "key-value", env = "HERO_HOST_KEY_VALUE", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub key_values: Vec<(String, String)>,

    /// Pass an environment variable (KEY=VALUE) to every component, as
    /// `spin up -e` does; it wins over the component's own `environment`
    /// (repeatable).
    #[arg(short = 'e', long = "env", env = "HERO_HOST_ENV", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub env: Vec<(String, String)>,

    /// Give an application variable a value, as `spin up --variable` does:
    /// `KEY=VALUE`, `KEY=@FILE` (the file's text, e.g. a mounted Kubernetes
    /// Secret), or `@FILE.json` / `@FILE.toml` (a table of values). Wins over
    /// the runtime config's providers and `SPIN_VARIABLE_<NAME>`
    /// (repeatable).
    #[arg(
        long = "variable",
        env = "HERO_HOST_VARIABLE",
        value_name = "KEY=VALUE | KEY=@FILE | @FILE.json | @FILE.toml"
    )]
    pub variables: Vec<String>,

    /// Run a SQL statement against the `default` SQLite database before
    /// serving, as `spin up --sqlite` does (e.g. a migration);
    /// `@FILE.sql` runs a file's statements, `@FILE.sql:LABEL` against
    /// another database (repeatable, in order).
    #[arg(
        long = "sqlite",
        env = "HERO_HOST_SQLITE",
        value_name = "STATEMENT | @FILE[:LABEL]"
    )]
    pub sqlite_statements: Vec<String>,

    /// Longest a request may run in the guest before it is interrupted and
    /// answered 504 (e.g. `30s`, `500ms`).
    #[arg(long, env = "HERO_HOST_REQUEST_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub request_timeout: Duration,

    /// Largest linear memory one component instance may grow to (e.g.
    /// `128MiB`); growing past it fails inside the guest.
    #[arg(long, env = "HERO_HOST_MAX_INSTANCE_MEMORY", default_value = "128MiB", value_parser = parse_size)]
    pub max_instance_memory: u64,

    /// Requests one WASIp3 instance serves before it is discarded. 1 means a
    /// fresh instance per request (full isolation, slower). WASIp2 components
    /// always get a fresh instance.
    #[arg(
        long,
        env = "HERO_HOST_MAX_INSTANCE_REUSE_COUNT",
        default_value = "128"
    )]
    pub max_instance_reuse_count: NonZeroU32,

    /// Requests one WASIp3 instance serves at the same time (16, as `spin up`
    /// and `wasmtime serve`). Guest output lines still name the request whose
    /// task wrote them. The trade-off: requests served at once share the
    /// guest's memory and globals, and a trap or timeout in one ends the
    /// instance and fails every request on it (each gets its own log line
    /// naming the cause). 1 serves one request at a time; with
    /// --max-instance-reuse-count 1 every request gets a fresh instance (full
    /// isolation).
    #[arg(
        long,
        env = "HERO_HOST_MAX_INSTANCE_CONCURRENT_REUSE_COUNT",
        default_value = "16"
    )]
    pub max_instance_concurrent_reuse_count: NonZeroU32,

    /// How long an idle instance is kept for reuse.
    #[arg(long, env = "HERO_HOST_IDLE_INSTANCE_TIMEOUT", default_value = "1s", value_parser = parse_duration)]
    pub idle_instance_timeout: Duration,

    /// Requests served at once; beyond it requests are answered 503 with
    /// `Retry-After` at once instead of queueing.
    #[arg(
        long,
        env = "HERO_HOST_MAX_CONCURRENT_REQUESTS",
        default_value = "1000"
    )]
    pub max_concurrent_requests: NonZeroU32,

    /// Largest request body accepted, checked before the guest runs (413).
    #[arg(long, env = "HERO_HOST_MAX_REQUEST_BODY_SIZE", default_value = "1MiB", value_parser = parse_size)]
    pub max_request_body_size: u64,

    /// Most request headers accepted (431 beyond); at most 256.
    #[arg(long, env = "HERO_HOST_MAX_REQUEST_HEADERS", default_value = "100")]
    pub max_request_headers: usize,

    /// Largest total size of the request head (request line and headers); 431
    /// beyond, 414 when the URI alone is too long.
    #[arg(long, env = "HERO_HOST_MAX_REQUEST_HEAD_SIZE", default_value = "64KiB", value_parser = parse_size)]
    pub max_request_head_size: u64,

    /// Longest URI accepted (414 beyond).
    #[arg(long, env = "HERO_HOST_MAX_URI_LENGTH", default_value = "8KiB", value_parser = parse_size)]
    pub max_uri_length: u64,

    /// A client must send a whole request head within this time, or the
    /// connection is closed: defends against slow clients, and bounds how
    /// long an idle keep-alive connection stays open.
    #[arg(long, env = "HERO_HOST_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub header_read_timeout: Duration,

    /// Time a client has to send a request body once its head is in,
    /// extended by a second for every --request-body-min-rate bytes it
    /// sends; a client slower than that is answered 408. Bodies up to 64 KiB
    /// are read before the request takes a slot or an instance, so a slow
    /// client holds only its connection.
    #[arg(long, env = "HERO_HOST_REQUEST_BODY_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub request_body_timeout: Duration,

    /// Bytes per second of request body that earn a client another second
    /// (see --request-body-timeout); 0 gives every body a fixed time.
    #[arg(long, env = "HERO_HOST_REQUEST_BODY_MIN_RATE", default_value = "500", value_parser = parse_size)]
    pub request_body_min_rate: u64,

    /// A response write that makes no progress for this long (the client
    /// stopped reading) closes the connection; the request is logged with
    /// what was handed over and `error_type` `write_timeout`.
    #[arg(long, env = "HERO_HOST_RESPONSE_WRITE_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub response_write_timeout: Duration,

    /// Connections waiting for a request (idle keep-alive, or new and silent)
    /// kept open at once; past it the longest idle are closed, so that they
    /// never crowd out active clients (the host holds 10,000 connections).
    #[arg(long, env = "HERO_HOST_MAX_IDLE_CONNECTIONS", default_value = "1000")]
    pub max_idle_connections: NonZeroU32,

    /// On SIGTERM or SIGINT, how long in-flight requests may take to finish
    /// before the host exits anyway.
    #[arg(long, env = "HERO_HOST_SHUTDOWN_GRACE", default_value = "25s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,

    /// Log line format on stdout: `json` (for collectors), `pretty` (for a
    /// terminal) or `off` (no invocation or guest lines; to measure what
    /// logging costs).
    #[arg(
        long,
        env = "HERO_HOST_LOG_FORMAT",
        default_value = "json",
        value_parser = PossibleValuesParser::new(LogFormat::NAMES).try_map(|name| name.parse::<LogFormat>())
    )]
    pub log_format: LogFormat,

    /// Which host log lines to write, as a tracing filter (`info`,
    /// `hero_host=debug`, ...). Invocation and guest lines are info.
    #[arg(long, env = "HERO_HOST_LOG_LEVEL", default_value = "info")]
    pub log_level: String,

    /// Record metrics. Off only to measure what instrumentation costs.
    #[arg(long, env = "HERO_HOST_METRICS", default_value = "on", value_name = "on|off", value_parser = parse_on_off, action = clap::ArgAction::Set)]
    pub metrics: bool,

    /// `service.name` of the OpenTelemetry resource (`target_info`).
    #[arg(long, env = "HERO_HOST_SERVICE_NAME")]
    pub service_name: Option<String>,

    /// `service.instance.id` of the OpenTelemetry resource; in Kubernetes, the
    /// pod name. Default: the host name.
    #[arg(long, env = "HERO_HOST_SERVICE_INSTANCE_ID")]
    pub service_instance_id: Option<String>,
}

const UP_AFTER_HELP: &str = "\
Every flag can also be set through its environment variable, shown in brackets.

Logs: one JSON object per line on stdout; exactly one invocation line per
request, plus the guest's own output lines (source=\"guest\").
Metrics: Prometheus text on http://<admin-listen>/metrics (OpenMetrics, with
exemplars, to `Accept: application/openmetrics-text`).
Traces: off unless the OpenTelemetry variables ask for them:
OTEL_EXPORTER_OTLP_ENDPOINT (or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT),
OTEL_EXPORTER_OTLP_PROTOCOL (http/protobuf or grpc), OTEL_EXPORTER_OTLP_HEADERS,
OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES, OTEL_TRACES_SAMPLER and
OTEL_TRACES_SAMPLER_ARG; OTEL_SDK_DISABLED=true turns them off.

Signals: SIGTERM or SIGINT stop accepting connections, turn /readyz false,
let in-flight requests finish (up to --shutdown-grace), flush logs and exit 0.

Exit codes: 0 after a clean shutdown, 64 for bad configuration or manifest,
1 for other failures.";

fn parse_key_value(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("expected KEY=VALUE, got {text:?}"))
}

fn parse_on_off(text: &str) -> Result<bool, String> {
    match text {
        "on" | "true" | "1" => Ok(true),
        "off" | "false" | "0" => Ok(false),
        _ => Err(format!("expected on or off, got {text:?}")),
    }
}

/// Parses `30s`, `500ms`, `2m`, `1h`; a bare number is seconds (as in Spin).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(text)
        .map_err(|e| format!("expected a duration such as 30s or 500ms, got {text:?}: {e}"))
}

/// Parses a size: a number with an optional unit `B`, `KB`, `KiB`, `MB`,
/// `MiB`, `GB`, `GiB` (case-insensitive).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("expected a size such as 128MiB, got {text:?}"))?;
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "kib" | "k" => 1 << 10,
        "mb" => 1_000_000,
        "mib" | "m" => 1 << 20,
        "gb" => 1_000_000_000,
        "gib" | "g" => 1 << 30,
        other => return Err(format!("unknown size unit {other:?} in {text:?}")),
    };
    number
        .checked_mul(multiplier)
        .ok_or_else(|| format!("size {text:?} is too large"))
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_sizes_with_units() {
        assert_eq!(parse_size("128MiB"), Ok(128 << 20));
        assert_eq!(parse_size("64 KiB"), Ok(64 << 10));
        assert_eq!(parse_size("2mb"), Ok(2_000_000));
        assert_eq!(parse_size("512"), Ok(512));
        assert!(
            parse_size("12 parsecs")
                .unwrap_err()
                .contains("unknown size unit")
        );
        assert!(parse_size("MiB").is_err());
        assert!(
            parse_size("99999999999999GiB")
                .unwrap_err()
                .contains("too large")
        );
    }

    #[test]
    fn parses_durations_like_spin() {
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn up_defaults_match_the_design() {
        let cli = Cli::try_parse_from(["hero-host", "up"]).unwrap();
        let Command::Up(up) = cli.command else {
            panic!("expected up")
        };
        assert_eq!(up.listen.to_string(), "127.0.0.1:3000");
        assert_eq!(up.admin_listen.to_string(), "127.0.0.1:9464");
        assert_eq!(up.request_timeout, Duration::from_secs(30));
        assert_eq!(up.max_instance_memory, 128 << 20);
        assert_eq!(up.max_instance_concurrent_reuse_count.get(), 16);
        assert_eq!(up.request_body_timeout, Duration::from_secs(10));
        assert_eq!(up.request_body_min_rate, 500);
        assert_eq!(up.response_write_timeout, Duration::from_secs(30));
        assert_eq!(up.max_idle_connections.get(), 1000);
        assert_eq!(up.log_format, LogFormat::Json);
        assert!(up.metrics);
    }

    #[test]
    fn metrics_take_on_or_off() {
        let up = |args: &[&str]| match Cli::try_parse_from([&["hero-host", "up"], args].concat())
            .unwrap()
            .command
        {
            Command::Up(up) => up,
            Command::Build(_) => unreachable!(),
        };
        assert!(!up(&["--metrics", "off"]).metrics);
        assert!(up(&["--metrics", "on"]).metrics);
        assert!(Cli::try_parse_from(["hero-host", "up", "--metrics", "maybe"]).is_err());
    }

    #[test]
    fn key_values_repeat_and_need_an_equals_sign() {
        let cli = Cli::try_parse_from([
            "hero-host",
            "up",
            "--key-value",
            "a=1",
            "--key-value",
            "b=x=y",
        ])
        .unwrap();
        let Command::Up(up) = cli.command else {
            panic!("expected up")
        };
        assert_eq!(
            up.key_values,
            [("a".into(), "1".into()), ("b".into(), "x=y".into())]
        );
        assert!(Cli::try_parse_from(["hero-host", "up", "--key-value", "novalue"]).is_err());
    }

    #[test]
    fn spin_up_flags_for_env_variables_and_sqlite_repeat() {
        let cli = Cli::try_parse_from([
            "hero-host",
            "up",
            "-e",
            "A=1",
            "--env",
            "B=x=y",
            "--variable",
            "token=@secret.txt",
            "--sqlite",
            "CREATE TABLE t (x)",
            "--sqlite",
            "@seed.sql:audit",
        ])
        .unwrap();
        let Command::Up(up) = cli.command else {
            panic!("expected up")
        };
        assert_eq!(
            up.env,
            [("A".into(), "1".into()), ("B".into(), "x=y".into())]
        );
        assert_eq!(up.variables, ["token=@secret.txt"]);
        assert_eq!(
            up.sqlite_statements,
            ["CREATE TABLE t (x)", "@seed.sql:audit"]
        );
        assert!(Cli::try_parse_from(["hero-host", "up", "-e", "NOVALUE"]).is_err());
    }
}
