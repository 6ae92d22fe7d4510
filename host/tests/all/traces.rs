//! Traces and exemplars as users see them. Spans are exported by the real
//! host over OTLP/HTTP to the receiver of this suite, which decodes the
//! protobuf with the official `opentelemetry-proto` definitions (no
//! OpenTelemetry Collector can run here); exemplars are read back through a
//! real Prometheus.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use crate::support::{
    AppDir, Host, OtlpReceiver, Prometheus, ReceivedSpan, agent, assert_log_line_valid, command,
    free_port, get, log_line_schema, post_new_hero, promtool_check, registry_and_chaos_manifest,
    send, start_with_env,
};

const SERVER: i32 = 2;
const CLIENT: i32 = 3;
/// `Status.code` of a failed span.
const STATUS_ERROR: i32 = 2;

/// A host exporting every trace to `receiver`, flushing every 100 ms.
fn traced(app: &AppDir, endpoint: &str, env: &[(&str, &str)]) -> Host {
    let mut all = vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ];
    all.extend_from_slice(env);
    start_with_env(app, &[], &all)
}

fn named<'a>(spans: &'a [ReceivedSpan], name: &str) -> Vec<&'a ReceivedSpan> {
    spans.iter().filter(|s| s.span.name == name).collect()
}

fn one<'a>(spans: &'a [ReceivedSpan], name: &str) -> &'a ReceivedSpan {
    let found = named(spans, name);
    assert_eq!(
        found.len(),
        1,
        "one {name:?} span expected among {:?}",
        spans.iter().map(|s| &s.span.name).collect::<Vec<_>>()
    );
    found[0]
}

/// A plain HTTP server that answers 200 and keeps the `traceparent` of each
/// request it gets.
fn upstream() -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let kept = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut traceparent = String::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                    break;
                }
                if let Some(value) = line.to_ascii_lowercase().strip_prefix("traceparent:") {
                    traceparent = value.trim().to_owned();
                }
            }
            kept.lock().unwrap().push(traceparent);
            let mut stream = stream;
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
        }
    });
    (addr, seen)
}

/// The registry and chaos, chaos allowed to call `upstream`.
fn chaos_app(upstream: SocketAddr) -> AppDir {
    AppDir::new(&format!(
        "{}allowed_outbound_hosts = [\"http://{upstream}\"]\n",
        registry_and_chaos_manifest()
    ))
}

/// GET with a `traceparent` header.
fn get_traced(host: &Host, path: &str, traceparent: &str) -> (u16, String) {
    let response = agent()
        .get(host.url(path))
        .header("traceparent", traceparent)
        .call()
        .unwrap();
    let status = response.status().as_u16();
    (status, response.into_body().read_to_string().unwrap())
}

fn invocation(host: &Host, path: &str) -> Value {
    host.wait_for_line(path, |l| {
        l["target"] == "hero_host::request" && l["path"] == path
    })
}

#[test]
fn every_request_is_a_server_span_with_its_children_and_its_line_names_it() {
    let receiver = OtlpReceiver::start();
    let app = AppDir::registry();
    let host = traced(
        &app,
        &receiver.endpoint(),
        &[
            ("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=test"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "x-tenant=heroes"),
        ],
    );
    let id = post_new_hero(
        &agent(),
        &host.url("/heroes"),
        r#"{"name":"Deadpond","power":"regeneration"}"#,
    );
    let caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let path = format!("/heroes/{id}");
    let (status, _) = get_traced(&host, &path, &format!("00-{caller_trace}-{caller_span}-01"));
    assert_eq!(status, 200);

    let spans = receiver.wait_for_trace(caller_trace, |spans| {
        spans.iter().any(|s| s.span.name == "spin_key_value.get")
            && spans.iter().any(|s| s.span.kind == SERVER)
    });
    let server = one(&spans, "GET /heroes/:id");
    assert_eq!(server.span.kind, SERVER);
    assert_eq!(
        server.parent_id(),
        caller_span,
        "continues the caller's trace"
    );
    assert_eq!(
        server.attribute("http.route").as_deref(),
        Some("/heroes/:id")
    );
    assert_eq!(
        server.attribute("http.request.method").as_deref(),
        Some("GET")
    );
    assert_eq!(
        server.attribute("http.response.status_code").as_deref(),
        Some("200")
    );
    assert_eq!(server.attribute("url.path").as_deref(), Some(path.as_str()));
    assert_eq!(server.attribute("error.type"), None);
    assert_eq!(server.resource["service.name"], "hero-registry");
    assert_eq!(server.resource["deployment.environment"], "test");
    assert_eq!(server.scope, "hero-host");
    assert!(
        receiver
            .export_headers()
            .iter()
            .all(|h| h.contains(&("x-tenant".to_owned(), "heroes".to_owned()))),
        "every export carries OTEL_EXPORTER_OTLP_HEADERS"
    );
    let call = one(&spans, "execute_wasm_component hero-registry");
    assert_eq!(call.parent_id(), server.span_id());
    let get = one(&spans, "spin_key_value.get");
    assert_eq!(get.parent_id(), call.span_id());
    assert_eq!(get.span.kind, CLIENT);
    assert_eq!(get.attribute("key_value.store").as_deref(), Some("default"));
    assert_eq!(get.attribute("db.system.name").as_deref(), Some("sqlite"));

    // The log line names the server span.
    let line = invocation(&host, &path);
    assert_eq!(line["trace_id"], caller_trace);
    assert_eq!(line["span_id"], server.span_id());

    // The first request waited for the instance to be made: its trace shows it.
    let first = invocation(&host, "/heroes");
    let first_trace = first["trace_id"].as_str().unwrap();
    let spans = receiver.wait_for_trace(first_trace, |spans| {
        spans.iter().any(|s| s.span.name.starts_with("instantiate"))
            && spans.iter().any(|s| s.span.kind == SERVER)
    });
    let server = one(&spans, "POST /heroes");
    assert_eq!(server.parent_id(), "", "a new trace");
    assert_eq!(first["span_id"], server.span_id());
    let call = one(&spans, "execute_wasm_component hero-registry");
    let instantiate = one(&spans, "instantiate hero-registry");
    assert_eq!(instantiate.parent_id(), call.span_id());
    assert!(instantiate.span.end_time_unix_nano >= instantiate.span.start_time_unix_nano);
    assert!(
        named(&spans, "spin_key_value.set")
            .iter()
            .all(|s| s.parent_id() == call.span_id())
    );
    assert!(!named(&spans, "spin_key_value.set").is_empty());
}

#[test]
fn guest_spans_logs_and_outbound_calls_join_their_request() {
    let receiver = OtlpReceiver::start();
    let (upstream, traceparents) = upstream();
    let app = chaos_app(upstream);
    let host = traced(&app, &receiver.endpoint(), &[]);
    let reply = get(&host.url(&format!("/chaos/otel?url=http://{upstream}/up")));
    assert_eq!(reply.status, 200, "{}", reply.body);
    let ids: Vec<&str> = reply.body.split(' ').collect();
    let (trace_id, outer, guest) = (ids[0], ids[1], ids[2]);

    let spans = receiver.wait_for_trace(trace_id, |spans| {
        ["chaos.work", "GET", "spin_key_value.set", "GET /chaos/..."]
            .iter()
            .all(|name| spans.iter().any(|s| s.span.name == *name))
    });
    let server = one(&spans, "GET /chaos/...");
    let call = one(&spans, "execute_wasm_component chaos");
    assert_eq!(call.parent_id(), server.span_id());
    assert_eq!(
        outer,
        call.span_id(),
        "outer-span-context is the guest call"
    );
    let work = one(&spans, "chaos.work");
    assert_eq!(
        (work.span_id().as_str(), work.parent_id().as_str()),
        (guest, outer)
    );
    assert_eq!(work.scope, "chaos");
    assert_eq!(work.attribute("chaos.step").as_deref(), Some("otel"));
    assert_eq!(work.span.events[0].name, "halfway");
    // Host spans started while the guest span was open are its children.
    let set = one(&spans, "spin_key_value.set");
    assert_eq!(set.parent_id(), guest);
    let client = one(&spans, "GET");
    assert_eq!(client.span.kind, CLIENT);
    assert_eq!(client.parent_id(), guest);
    assert_eq!(
        client.attribute("http.response.status_code").as_deref(),
        Some("200")
    );
    assert_eq!(
        client.attribute("server.port"),
        Some(upstream.port().to_string())
    );
    assert_eq!(
        traceparents.lock().unwrap().as_slice(),
        [format!("00-{trace_id}-{}-01", client.span_id())],
        "the upstream continues the trace under the client span"
    );

    let line = invocation(&host, "/chaos/otel");
    let record = host.wait_for_line("the guest's log record", |l| l["stream"] == "otel");
    assert_eq!(record["source"], "guest");
    assert_eq!(record["request_id"], line["request_id"]);
    assert_eq!(record["trace_id"], trace_id);
    assert_eq!(record["span_id"], guest);
    assert_eq!(record["level"], "warn");
    assert_eq!(record["message"], "guest says hi");
    assert_eq!(record["hero"], "deadpond");
    assert_eq!(record["event_name"], "chaos.otel");
    assert_log_line_valid(&log_line_schema(), &record);

    // A 5xx fails the server span; a 4xx does not.
    for (code, trace_id, failed) in [
        (503, "1bf92f3577b34da6a3ce929d0e0e4736", true),
        (404, "2bf92f3577b34da6a3ce929d0e0e4736", false),
    ] {
        let path = format!("/chaos/status?code={code}");
        let (status, _) = get_traced(&host, &path, &format!("00-{trace_id}-00f067aa0ba902b7-01"));
        assert_eq!(status, code);
        let spans = receiver.wait_for_trace(trace_id, |s| s.iter().any(|s| s.span.kind == SERVER));
        let server = one(&spans, "GET /chaos/...");
        let status = server.span.status.clone().unwrap_or_default();
        assert_eq!(status.code == STATUS_ERROR, failed, "{code}: {status:?}");
        let error_type = server.attribute("error.type");
        assert_eq!(error_type.as_deref(), failed.then_some("503"), "{code}");
    }
}

#[test]
fn unsampled_requests_export_nothing_and_pass_their_decision_on() {
    let receiver = OtlpReceiver::start();
    let (upstream, traceparents) = upstream();
    let app = chaos_app(upstream);
    let host = traced(
        &app,
        &receiver.endpoint(),
        &[
            ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0"),
        ],
    );
    // A new trace: not sampled at a ratio of 0.
    let reply = get(&host.url(&format!("/chaos/fetch?url=http://{upstream}/a")));
    assert_eq!(reply.body, "upstream 200");
    let unsampled = invocation(&host, "/chaos/fetch");
    // A caller's sampled trace: the parent decides.
    let sampled_trace = "0af7651916cd43dd8448eb211c80319c";
    let (status, _) = get_traced(
        &host,
        "/chaos/hello",
        &format!("00-{sampled_trace}-b7ad6b7169203331-01"),
    );
    assert_eq!(status, 200);
    receiver.wait_for_trace(sampled_trace, |spans| {
        spans.iter().any(|s| s.span.kind == SERVER)
    });

    let unsampled_trace = unsampled["trace_id"].as_str().unwrap();
    assert!(
        receiver
            .spans()
            .iter()
            .all(|s| s.trace_id() != unsampled_trace),
        "an unsampled request exports nothing"
    );
    assert_eq!(
        traceparents.lock().unwrap().as_slice(),
        [format!(
            "00-{unsampled_trace}-{}-00",
            unsampled["span_id"].as_str().unwrap()
        )],
        "the upstream learns the request was not sampled"
    );
}

#[test]
fn an_absent_collector_costs_no_request_and_is_reported_once() {
    let app = AppDir::new(&registry_and_chaos_manifest());
    let nobody = format!("http://127.0.0.1:{}", free_port());
    let host = traced(&app, &nobody, &[]);
    let agent = agent();
    for i in 0..200 {
        let reply = send(&agent, "GET", &host.url("/chaos/hello"), None);
        assert_eq!(reply.status, 200, "request {i}");
    }
    host.wait_for_invocations(200);
    crate::support::wait_until(
        "failed exports to be counted",
        Duration::from_secs(30),
        || {
            host.metric_sum(
                "hero_host_trace_dropped_spans_total",
                r#"reason="export_failed""#,
            ) > 0.0
        },
    );
    // Failures come every 100 ms; the log says so once a minute.
    std::thread::sleep(Duration::from_secs(1));
    let warnings = host
        .json_lines()
        .iter()
        .filter(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("trace export failed"))
        })
        .count();
    assert_eq!(warnings, 1, "{}", host.lines().join("\n"));
}

#[test]
fn a_collector_that_never_answers_costs_no_request_and_drops_are_counted() {
    // Accepts connections and never answers: every export waits for its
    // timeout while spans keep ending.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", silent.local_addr().unwrap());
    let held = Arc::new(Mutex::new(Vec::new()));
    let keep = held.clone();
    std::thread::spawn(move || {
        for stream in silent.incoming().flatten() {
            keep.lock().unwrap().push(stream);
        }
    });
    let app = AppDir::new(&registry_and_chaos_manifest());
    let host = traced(
        &app,
        &endpoint,
        &[
            ("OTEL_BSP_MAX_QUEUE_SIZE", "16"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "30000"),
        ],
    );
    let agent = agent();
    for i in 0..200 {
        let reply = send(&agent, "GET", &host.url("/chaos/hello"), None);
        assert_eq!(reply.status, 200, "request {i}");
    }
    let dropped = host.metric_sum(
        "hero_host_trace_dropped_spans_total",
        r#"reason="queue_full""#,
    );
    // Two spans a request (server, guest call), at most 16 waiting.
    assert!(dropped >= 400.0 - 16.0 - 16.0, "dropped {dropped}");
    assert_eq!(
        host.metric_sum("hero_host_trace_exported_spans_total", ""),
        0.0
    );
}

#[test]
fn metrics_answer_openmetrics_with_exemplars_only_when_asked() {
    let receiver = OtlpReceiver::start();
    let app = AppDir::registry();
    let host = traced(&app, &receiver.endpoint(), &[]);
    for _ in 0..5 {
        assert_eq!(get(&host.url("/")).status, 200);
    }
    let ours: HashSet<String> = host
        .wait_for_invocations(5)
        .iter()
        .map(|l| l["trace_id"].as_str().unwrap().to_owned())
        .collect();

    let response = agent()
        .get(host.admin_url("/metrics"))
        .header(
            "accept",
            "application/openmetrics-text;version=1.0.0,text/plain;q=0.5",
        )
        .call()
        .unwrap();
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text; version=1.0.0")
    );
    let text = response.into_body().read_to_string().unwrap();
    assert!(text.ends_with("# EOF\n"), "{text}");
    assert!(text.contains("# TYPE wasm_invocations counter\n"), "{text}");
    let exemplar_traces: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("http_server_request_duration_seconds_bucket{"))
        .filter_map(|l| l.split_once(" # {trace_id=\""))
        .map(|(_, rest)| &rest[..32])
        .collect();
    assert!(!exemplar_traces.is_empty(), "{text}");
    assert!(
        exemplar_traces.iter().all(|t| ours.contains(*t)),
        "{exemplar_traces:?} {ours:?}"
    );

    let plain = get(&host.admin_url("/metrics"));
    assert_eq!(
        plain.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert!(!plain.body.contains("# {"), "no exemplars in 0.0.4 text");
    assert!(plain.body.contains("hero_host_trace_dropped_spans_total"));
    let (clean, said) = promtool_check(&plain.body);
    assert!(clean && said.is_empty(), "promtool: {said}");
}

#[test]
fn prometheus_stores_exemplars_with_the_trace_ids_of_requests() {
    let receiver = OtlpReceiver::start();
    let app = AppDir::registry();
    let host = traced(&app, &receiver.endpoint(), &[]);
    let prometheus = Prometheus::with_config_and_flags(
        |_| {
            format!(
                "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: hero-host\n    static_configs:\n      - targets: ['{}']\n",
                host.admin
            )
        },
        &["--enable-feature=exemplar-storage"],
    );
    let agent = agent();
    let mut ours = HashSet::new();
    let query = "http_server_request_duration_seconds_bucket";
    let mut found = Vec::new();
    prometheus.wait("exemplars of our requests", || {
        for _ in 0..5 {
            send(&agent, "GET", &host.url("/heroes?limit=1"), None);
        }
        ours.extend(
            host.invocations()
                .iter()
                .filter_map(|l| l["trace_id"].as_str().map(str::to_owned)),
        );
        let data = prometheus
            .api("/api/v1/query_exemplars", Some(query))
            .unwrap_or_else(|e| panic!("query_exemplars: {e}"));
        found = data
            .as_array()
            .into_iter()
            .flatten()
            .filter(|series| series["seriesLabels"]["http_route"] == "/heroes")
            .flat_map(|series| series["exemplars"].as_array().cloned().unwrap_or_default())
            .collect();
        !found.is_empty()
    });
    for exemplar in &found {
        let trace_id = exemplar["labels"]["trace_id"].as_str().unwrap();
        assert!(
            ours.contains(trace_id),
            "{exemplar} is not one of our requests"
        );
        assert_eq!(exemplar["labels"]["span_id"].as_str().unwrap().len(), 16);
    }
}

#[test]
fn bad_otel_variables_exit_64_naming_the_variable() {
    let app = AppDir::registry();
    let output = command(&app, &[])
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")
        .env("OTEL_TRACES_SAMPLER", "sometimes")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("OTEL_TRACES_SAMPLER=\"sometimes\""),
        "{stderr}"
    );
}
