//! The standard OpenTelemetry environment variables, read and checked at
//! start-up: where traces go (`OTEL_EXPORTER_OTLP_*`), which are kept
//! (`OTEL_TRACES_SAMPLER`), and who we are (`OTEL_SERVICE_NAME`,
//! `OTEL_RESOURCE_ATTRIBUTES`). Tracing is off unless an OTLP endpoint is
//! set, and `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none` turn it
//! off whatever else is set. A value that cannot be understood is an error
//! naming the variable (bad configuration), never silently ignored.

use std::time::Duration;

/// What the `OTEL_*` variables say.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OtelSettings {
    /// `OTEL_SERVICE_NAME`, else `service.name` of the resource attributes.
    pub service_name: Option<String>,
    /// `OTEL_RESOURCE_ATTRIBUTES`, in order, `service.name` included.
    pub resource: Vec<(String, String)>,
    /// Where and how traces are exported; `None` when tracing is off.
    pub traces: Option<TraceExport>,
}

/// The OTLP wire protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// OTLP/HTTP with protobuf bodies (`http/protobuf`, the default).
    HttpProtobuf,
    /// OTLP/gRPC (`grpc`).
    Grpc,
}

impl Protocol {
    /// The variable's spelling.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::HttpProtobuf => "http/protobuf",
            Protocol::Grpc => "grpc",
        }
    }
}

/// Which traces are kept (`OTEL_TRACES_SAMPLER` and its argument).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplerChoice {
    /// Follow a caller's sampled flag, when `traceparent` has one.
    pub parent_based: bool,
    /// The fraction of new traces kept (0 to 1).
    pub ratio: f64,
}

/// Where traces go and how.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceExport {
    /// The URL spans are sent to: with `/v1/traces` for OTLP/HTTP when it came
    /// from the general endpoint, as given otherwise.
    pub endpoint: String,
    /// The wire protocol.
    pub protocol: Protocol,
    /// Headers sent with every export (authentication, tenant).
    pub headers: Vec<(String, String)>,
    /// How long one export may take.
    pub timeout: Duration,
    /// Which traces are kept.
    pub sampler: SamplerChoice,
    /// Ended spans waiting for export, at most (`OTEL_BSP_MAX_QUEUE_SIZE`);
    /// beyond, spans are dropped and counted.
    pub queue_size: usize,
}

/// A variable whose value cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{variable}={value:?}: {problem}")]
pub struct OtelEnvError {
    /// The variable.
    pub variable: &'static str,
    /// Its value.
    pub value: String,
    /// What is wrong with it.
    pub problem: String,
}

/// The default export timeout, as the specification sets it.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// The default span queue, as the SDK sets it.
const DEFAULT_QUEUE_SIZE: usize = 2048;
/// The largest span queue accepted (each waiting span holds a few hundred
/// bytes).
const MAX_QUEUE_SIZE: usize = 1 << 20;

/// Reads the variables through `env` (the process environment, or a table in
/// tests).
pub fn from_env(env: impl Fn(&str) -> Option<String>) -> Result<OtelSettings, OtelEnvError> {
    let var = |name: &'static str| {
        env(name)
            .filter(|v| !v.trim().is_empty())
            .map(|value| Var { name, value })
    };
    if let Some(disabled) = var("OTEL_SDK_DISABLED")
        && disabled.boolean()?
    {
        return Ok(OtelSettings::default());
    }
    let resource = match var("OTEL_RESOURCE_ATTRIBUTES") {
        Some(attributes) => attributes.pairs()?,
        None => Vec::new(),
    };
    let service_name = var("OTEL_SERVICE_NAME")
        .map(|v| v.value.trim().to_owned())
        .or_else(|| {
            resource
                .iter()
                .find(|(key, _)| key == "service.name")
                .map(|(_, value)| value.clone())
        });
    Ok(OtelSettings {
        service_name,
        resource,
        traces: trace_export(&var)?,
    })
}

/// The trace export, if the variables turn it on.
fn trace_export(
    var: &impl Fn(&'static str) -> Option<Var>,
) -> Result<Option<TraceExport>, OtelEnvError> {
    if let Some(exporter) = var("OTEL_TRACES_EXPORTER") {
        match exporter.value.trim() {
            "otlp" => {}
            "none" => return Ok(None),
            _ => return Err(exporter.invalid("hero-host exports traces with `otlp`, or `none`")),
        }
    }
    let signal = var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
    let general = var("OTEL_EXPORTER_OTLP_ENDPOINT");
    let Some(endpoint_var) = signal.clone().or(general) else {
        return Ok(None);
    };
    let protocol = match var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        .or_else(|| var("OTEL_EXPORTER_OTLP_PROTOCOL"))
    {
        None => Protocol::HttpProtobuf,
        Some(v) => match v.value.trim() {
            "http/protobuf" => Protocol::HttpProtobuf,
            "grpc" => Protocol::Grpc,
            "http/json" => {
                return Err(v.invalid("http/json is not supported: use http/protobuf or grpc"));
            }
            _ => return Err(v.invalid("expected http/protobuf or grpc")),
        },
    };
    let url = endpoint_var.url()?;
    // The general endpoint is the collector's base: OTLP/HTTP appends the
    // signal's path; a per-signal endpoint is used as it is.
    let endpoint = if signal.is_none() && protocol == Protocol::HttpProtobuf {
        format!("{}/v1/traces", url.as_str().trim_end_matches('/'))
    } else {
        endpoint_var.value.trim().to_owned()
    };
    let headers = match var("OTEL_EXPORTER_OTLP_TRACES_HEADERS")
        .or_else(|| var("OTEL_EXPORTER_OTLP_HEADERS"))
    {
        Some(headers) => headers.headers()?,
        None => Vec::new(),
    };
    let timeout = match var("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT")
        .or_else(|| var("OTEL_EXPORTER_OTLP_TIMEOUT"))
    {
        Some(timeout) => Duration::from_millis(timeout.number(1, u64::MAX)?),
        None => DEFAULT_TIMEOUT,
    };
    let queue_size = match var("OTEL_BSP_MAX_QUEUE_SIZE") {
        Some(size) => {
            usize::try_from(size.number(1, MAX_QUEUE_SIZE as u64)?).unwrap_or(MAX_QUEUE_SIZE)
        }
        None => DEFAULT_QUEUE_SIZE,
    };
    Ok(Some(TraceExport {
        endpoint,
        protocol,
        headers,
        timeout,
        sampler: sampler(var)?,
        queue_size,
    }))
}

/// `OTEL_TRACES_SAMPLER` (default `parentbased_always_on`) and, for the
/// ratio samplers, `OTEL_TRACES_SAMPLER_ARG` (default 1).
fn sampler(var: &impl Fn(&'static str) -> Option<Var>) -> Result<SamplerChoice, OtelEnvError> {
    let choice = var("OTEL_TRACES_SAMPLER");
    let name = choice
        .as_ref()
        .map_or("parentbased_always_on", |v| v.value.trim());
    let (parent_based, root) = match name.strip_prefix("parentbased_") {
        Some(root) => (true, root),
        None => (false, name),
    };
    let ratio = match root {
        "always_on" => 1.0,
        "always_off" => 0.0,
        "traceidratio" => match var("OTEL_TRACES_SAMPLER_ARG") {
            Some(arg) => arg.ratio()?,
            None => 1.0,
        },
        _ => {
            let choice = choice.expect("the default sampler is known");
            return Err(choice.invalid(
                "expected always_on, always_off, traceidratio, parentbased_always_on, \
                 parentbased_always_off or parentbased_traceidratio",
            ));
        }
    };
    Ok(SamplerChoice {
        parent_based,
        ratio,
    })
}

/// One variable's value.
#[derive(Clone)]
struct Var {
    name: &'static str,
    value: String,
}

impl Var {
    fn invalid(&self, problem: impl Into<String>) -> OtelEnvError {
        OtelEnvError {
            variable: self.name,
            value: self.value.clone(),
            problem: problem.into(),
        }
    }

    fn boolean(&self) -> Result<bool, OtelEnvError> {
        match self.value.trim().to_ascii_lowercase().as_str() {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err(self.invalid("expected true or false")),
        }
    }

    fn number(&self, min: u64, max: u64) -> Result<u64, OtelEnvError> {
        match self.value.trim().parse::<u64>() {
            Ok(n) if (min..=max).contains(&n) => Ok(n),
            _ => Err(self.invalid(format!("expected a whole number from {min} to {max}"))),
        }
    }

    fn ratio(&self) -> Result<f64, OtelEnvError> {
        match self.value.trim().parse::<f64>() {
            Ok(ratio) if (0.0..=1.0).contains(&ratio) => Ok(ratio),
            _ => Err(self.invalid("expected a ratio from 0 to 1, such as 0.1")),
        }
    }

    fn url(&self) -> Result<url::Url, OtelEnvError> {
        let url = url::Url::parse(self.value.trim())
            .map_err(|e| self.invalid(format!("not a URL: {e}")))?;
        match url.scheme() {
            "http" if url.host().is_some() => Ok(url),
            "http" => Err(self.invalid("the URL has no host")),
            "https" => Err(self.invalid(
                "https is not supported: send to a collector over http (a node agent or \
                 sidecar OpenTelemetry Collector that forwards over TLS)",
            )),
            _ => Err(self.invalid("expected an http:// URL")),
        }
    }

    /// `key=value,key=value`, values percent-decoded (the W3C baggage form
    /// both `OTEL_RESOURCE_ATTRIBUTES` and the headers variables use).
    fn pairs(&self) -> Result<Vec<(String, String)>, OtelEnvError> {
        let mut pairs = Vec::new();
        for item in self.value.split(',').filter(|item| !item.trim().is_empty()) {
            let Some((key, value)) = item.split_once('=') else {
                return Err(self.invalid(format!("{:?} is not key=value", item.trim())));
            };
            let key = key.trim();
            if key.is_empty() {
                return Err(self.invalid(format!("{:?} has no key", item.trim())));
            }
            let value = percent_encoding::percent_decode_str(value.trim())
                .decode_utf8()
                .map_err(|_| self.invalid(format!("the value of {key} is not UTF-8")))?;
            pairs.push((key.to_owned(), value.into_owned()));
        }
        Ok(pairs)
    }

    /// Header pairs whose names and values HTTP accepts.
    fn headers(&self) -> Result<Vec<(String, String)>, OtelEnvError> {
        let pairs = self.pairs()?;
        for (name, value) in &pairs {
            if http::HeaderName::try_from(name.as_str()).is_err() {
                return Err(self.invalid(format!("{name:?} is not a header name")));
            }
            if http::HeaderValue::try_from(value.as_str()).is_err() {
                return Err(self.invalid(format!("the value of {name} is not a header value")));
            }
        }
        Ok(pairs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(vars: &[(&str, &str)]) -> Result<OtelSettings, OtelEnvError> {
        from_env(|name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    fn export(vars: &[(&str, &str)]) -> TraceExport {
        read(vars).unwrap().traces.expect("tracing on")
    }

    #[test]
    fn tracing_is_off_without_an_endpoint() {
        assert_eq!(read(&[]).unwrap(), OtelSettings::default());
        let settings = read(&[
            ("OTEL_SERVICE_NAME", "heroes"),
            ("OTEL_TRACES_SAMPLER", "always_on"),
        ])
        .unwrap();
        assert_eq!(settings.traces, None);
        assert_eq!(settings.service_name.as_deref(), Some("heroes"));
    }

    #[test]
    fn the_general_endpoint_gets_the_signal_path_and_defaults_apply() {
        let export = export(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/")]);
        assert_eq!(export.endpoint, "http://collector:4318/v1/traces");
        assert_eq!(export.protocol, Protocol::HttpProtobuf);
        assert_eq!(export.timeout, Duration::from_secs(10));
        assert_eq!(export.queue_size, 2048);
        assert_eq!(
            export.sampler,
            SamplerChoice {
                parent_based: true,
                ratio: 1.0
            }
        );
    }

    #[test]
    fn per_signal_variables_beat_the_general_ones() {
        let export = export(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://general:4318"),
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "http://tempo:4318/custom",
            ),
            ("OTEL_EXPORTER_OTLP_HEADERS", "a=1"),
            (
                "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
                "x-tenant=heroes,authorization=Bearer%20t0k",
            ),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "3000"),
            ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "500"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc"),
        ]);
        assert_eq!(export.endpoint, "http://tempo:4318/custom");
        assert_eq!(export.protocol, Protocol::Grpc);
        assert_eq!(
            export.headers,
            [
                ("x-tenant".to_owned(), "heroes".to_owned()),
                ("authorization".to_owned(), "Bearer t0k".to_owned())
            ]
        );
        assert_eq!(export.timeout, Duration::from_millis(500));
    }

    #[test]
    fn grpc_uses_the_general_endpoint_as_it_is() {
        let export = export(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ]);
        assert_eq!(export.endpoint, "http://collector:4317");
    }

    #[test]
    fn samplers_take_their_ratio() {
        let sampler = |name: &str, arg: &str| {
            export(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
                ("OTEL_TRACES_SAMPLER", name),
                ("OTEL_TRACES_SAMPLER_ARG", arg),
            ])
            .sampler
        };
        assert_eq!(
            sampler("parentbased_traceidratio", "0.1"),
            SamplerChoice {
                parent_based: true,
                ratio: 0.1
            }
        );
        assert_eq!(
            sampler("traceidratio", "0.25"),
            SamplerChoice {
                parent_based: false,
                ratio: 0.25
            }
        );
        assert_eq!(sampler("always_off", "ignored").ratio, 0.0);
        assert_eq!(sampler("parentbased_always_off", "").ratio, 0.0);
        assert_eq!(sampler("always_on", "").ratio, 1.0);
    }

    #[test]
    fn disabled_or_none_turn_tracing_off_whatever_else_is_set() {
        let endpoint = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318");
        assert_eq!(
            read(&[endpoint, ("OTEL_SDK_DISABLED", "TRUE")])
                .unwrap()
                .traces,
            None
        );
        assert_eq!(
            read(&[endpoint, ("OTEL_TRACES_EXPORTER", "none")])
                .unwrap()
                .traces,
            None
        );
        assert!(
            read(&[endpoint, ("OTEL_SDK_DISABLED", "false")])
                .unwrap()
                .traces
                .is_some()
        );
        assert!(
            read(&[endpoint, ("OTEL_TRACES_EXPORTER", "otlp")])
                .unwrap()
                .traces
                .is_some()
        );
    }

    #[test]
    fn the_service_name_comes_from_the_variable_else_the_resource() {
        let settings = read(&[(
            "OTEL_RESOURCE_ATTRIBUTES",
            "service.name=from-attrs,deployment.environment=prod%2Ceu",
        )])
        .unwrap();
        assert_eq!(settings.service_name.as_deref(), Some("from-attrs"));
        assert_eq!(
            settings.resource[1],
            ("deployment.environment".to_owned(), "prod,eu".to_owned())
        );
        let settings = read(&[
            ("OTEL_RESOURCE_ATTRIBUTES", "service.name=from-attrs"),
            ("OTEL_SERVICE_NAME", "from-variable"),
        ])
        .unwrap();
        assert_eq!(settings.service_name.as_deref(), Some("from-variable"));
    }

    #[test]
    fn bad_values_are_errors_naming_the_variable() {
        let endpoint = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318");
        for (vars, variable) in [
            (
                vec![("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318")],
                "OTEL_EXPORTER_OTLP_ENDPOINT",
            ),
            (
                vec![("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "ftp://c")],
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            ),
            (
                vec![("OTEL_EXPORTER_OTLP_ENDPOINT", "https://c:4318")],
                "OTEL_EXPORTER_OTLP_ENDPOINT",
            ),
            (
                vec![endpoint, ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")],
                "OTEL_EXPORTER_OTLP_PROTOCOL",
            ),
            (
                vec![endpoint, ("OTEL_EXPORTER_OTLP_PROTOCOL", "udp")],
                "OTEL_EXPORTER_OTLP_PROTOCOL",
            ),
            (
                vec![endpoint, ("OTEL_EXPORTER_OTLP_HEADERS", "novalue")],
                "OTEL_EXPORTER_OTLP_HEADERS",
            ),
            (
                vec![endpoint, ("OTEL_EXPORTER_OTLP_HEADERS", "bad name=1")],
                "OTEL_EXPORTER_OTLP_HEADERS",
            ),
            (
                vec![endpoint, ("OTEL_EXPORTER_OTLP_TIMEOUT", "10s")],
                "OTEL_EXPORTER_OTLP_TIMEOUT",
            ),
            (
                vec![endpoint, ("OTEL_TRACES_SAMPLER", "jaeger_remote")],
                "OTEL_TRACES_SAMPLER",
            ),
            (
                vec![
                    endpoint,
                    ("OTEL_TRACES_SAMPLER", "traceidratio"),
                    ("OTEL_TRACES_SAMPLER_ARG", "1.5"),
                ],
                "OTEL_TRACES_SAMPLER_ARG",
            ),
            (
                vec![endpoint, ("OTEL_TRACES_EXPORTER", "zipkin")],
                "OTEL_TRACES_EXPORTER",
            ),
            (
                vec![endpoint, ("OTEL_BSP_MAX_QUEUE_SIZE", "0")],
                "OTEL_BSP_MAX_QUEUE_SIZE",
            ),
            (vec![("OTEL_SDK_DISABLED", "yes")], "OTEL_SDK_DISABLED"),
            (
                vec![("OTEL_RESOURCE_ATTRIBUTES", "=x")],
                "OTEL_RESOURCE_ATTRIBUTES",
            ),
        ] {
            let error = read(&vars).expect_err(variable);
            assert_eq!(error.variable, variable, "{error}");
            assert!(error.to_string().starts_with(variable), "{error}");
        }
    }
}
