//! Metrics and logs as users see them: read back through a real Prometheus,
//! checked by promtool, and validated against the log-line JSON Schema.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{
    AppDir, Host, Prometheus, agent, assert_log_line_valid, get, is_invocation, log_line_schema,
    promtool_check, raw_exchange, raw_status, registry_and_chaos_manifest, sample_value, send,
    start, wait_until,
};

/// Series (name and labels) of an exposition, each once.
fn series(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.rsplit_once(' ').map_or(l, |(s, _)| s).to_owned())
        .collect()
}

#[test]
fn prometheus_reads_exact_request_counts_per_route() {
    let app = AppDir::new(&registry_and_chaos_manifest());
    let host = start(&app, &[]);
    let prometheus = Prometheus::start(&[host.admin]);
    let agent = agent();
    let mix: &[(&str, &str, Option<&str>, usize)] = &[
        ("GET", "/", None, 7),
        ("POST", "/heroes", Some(r#"{"name":"a","power":"b"}"#), 5),
        ("GET", "/heroes/01ARZ3NDEKTSV4RRFFQ69G5FAV", None, 3),
        ("PATCH", "/heroes", None, 2),
        ("GET", "/nope", None, 4),
        ("GET", "/chaos/trap", None, 2),
    ];
    for (method, path, body, times) in mix {
        for _ in 0..*times {
            send(&agent, method, &host.url(path), *body);
        }
    }
    let query = "sum by (http_route, http_request_method, http_response_status_code) (http_server_request_duration_seconds_count)";
    let result = prometheus.wait_for(query, |r| r.iter().map(sample_value).sum::<f64>() == 23.0);
    let counts: BTreeMap<(String, String, String), f64> = result
        .iter()
        .map(|s| {
            let m = &s["metric"];
            let key = |k: &str| m[k].as_str().unwrap_or("").to_owned();
            (
                (
                    key("http_route"),
                    key("http_request_method"),
                    key("http_response_status_code"),
                ),
                sample_value(s),
            )
        })
        .collect();
    let expected: BTreeMap<(String, String, String), f64> = [
        (("/", "GET", "200"), 7.0),
        (("/heroes", "POST", "201"), 5.0),
        (("/heroes/:id", "GET", "404"), 3.0),
        (("/heroes", "PATCH", "405"), 2.0),
        (("unmatched", "GET", "404"), 4.0),
        (("/chaos/...", "GET", "500"), 2.0),
    ]
    .into_iter()
    .map(|((r, m, s), n)| ((r.to_owned(), m.to_owned(), s.to_owned()), n))
    .collect();
    assert_eq!(counts, expected);

    let buckets = prometheus
        .query(r#"sum by (le) (http_server_request_duration_seconds_bucket{http_route="/"})"#)
        .unwrap();
    let les: HashSet<String> = buckets
        .iter()
        .map(|b| b["metric"]["le"].as_str().unwrap().to_owned())
        .collect();
    for le in [
        "0.005", "0.01", "0.025", "0.05", "0.075", "0.1", "0.25", "0.5", "0.75", "1", "2.5", "5",
        "7.5", "10", "+Inf",
    ] {
        assert!(les.contains(le), "bucket le={le} missing: {les:?}");
    }
    let top = buckets.iter().find(|b| b["metric"]["le"] == "10").unwrap();
    assert_eq!(
        sample_value(top),
        7.0,
        "every request fell in some bucket up to 10 s"
    );

    let traps = prometheus
        .query(r#"sum(wasm_guest_traps_total{spin_component="chaos"})"#)
        .unwrap();
    assert_eq!(traps.first().map(sample_value), Some(2.0));
    let errors = prometheus
        .query(r#"sum(http_server_request_duration_seconds_count{error_type!=""})"#)
        .unwrap();
    assert_eq!(
        errors.first().map(sample_value),
        Some(2.0),
        "the trapped requests carry error_type"
    );
}

#[test]
fn metrics_pass_promtool_before_and_after_traffic() {
    let app = AppDir::new(&registry_and_chaos_manifest());
    let host = start(&app, &[]);
    for text in [host.metrics_text(), {
        let agent = agent();
        for path in ["/", "/heroes", "/nope", "/chaos/trap", "/chaos/alloc?mb=1"] {
            send(&agent, "GET", &host.url(path), None);
        }
        send(
            &agent,
            "POST",
            &host.url("/heroes"),
            Some(r#"{"name":"a","power":"b"}"#),
        );
        host.metrics_text()
    }] {
        let (clean, said) = promtool_check(&text);
        assert!(clean && said.is_empty(), "promtool: {said}\n{text}");
        let all = series(&text);
        let unique: HashSet<&String> = all.iter().collect();
        assert_eq!(all.len(), unique.len(), "duplicate series");
        for doubled in ["_seconds_seconds", "_total_total", "_bytes_bytes"] {
            assert!(!text.contains(doubled), "doubled suffix {doubled}");
        }
        for family in [
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
            "process_open_fds",
            "process_start_time_seconds",
            "target_info",
        ] {
            assert!(text.contains(family), "{family} missing");
        }
        for line in text.lines().filter(|l| l.starts_with("# HELP ")) {
            assert!(
                line.split_whitespace().count() > 3,
                "a metric without a description: {line}"
            );
        }
    }
}

/// One request of the mixed load, and the status it must get.
fn mixed_request(agent: &ureq::Agent, host: &Host, i: usize) -> u16 {
    let big = || json!({"name": "a", "power": "p".repeat(70 * 1024)}).to_string();
    let (method, path, body, expected) = match i % 7 {
        0 => ("GET", "/", None, 200),
        1 => ("GET", "/nope", None, 404),
        2 => ("DELETE", "/heroes", None, 405),
        3 => ("POST", "/heroes", Some(big()), 413),
        4 => ("POST", "/heroes", Some(r#"{"name":""}"#.to_owned()), 422),
        5 => ("GET", "/chaos/trap", None, 500),
        _ => (
            "POST",
            "/heroes",
            Some(format!(r#"{{"name":"hero {i}","power":"p"}}"#)),
            201,
        ),
    };
    let reply = send(agent, method, &host.url(path), body.as_deref());
    assert_eq!(reply.status, expected, "{method} {path}: {}", reply.body);
    reply.status
}

#[test]
fn a_thousand_mixed_requests_give_a_thousand_valid_invocation_lines() {
    let _heavy = crate::support::exclusive();
    let app = AppDir::new(&registry_and_chaos_manifest());
    let host = std::sync::Arc::new(start(&app, &[]));
    let before = host.invocations().len();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let host = host.clone();
            std::thread::spawn(move || {
                let agent = agent();
                let mut seen: HashMap<u64, usize> = HashMap::new();
                for i in (t..1000).step_by(4) {
                    *seen
                        .entry(u64::from(mixed_request(&agent, &host, i)))
                        .or_default() += 1;
                }
                seen
            })
        })
        .collect();
    // What the clients were answered, by status.
    let mut answered: HashMap<u64, usize> = HashMap::new();
    for thread in threads {
        for (status, count) in thread.join().unwrap() {
            *answered.entry(status).or_default() += count;
        }
    }
    host.wait_for_invocations(before + 1000);
    std::thread::sleep(Duration::from_millis(300));
    let lines = host.json_lines();
    let invocations: Vec<&Value> = lines
        .iter()
        .filter(|l| is_invocation(l))
        .skip(before)
        .collect();
    assert_eq!(
        invocations.len(),
        1000,
        "exactly one invocation line per request"
    );
    let ids: HashSet<&str> = invocations
        .iter()
        .map(|l| l["request_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 1000, "request ids are unique");

    let schema = log_line_schema();
    for line in &lines {
        assert_log_line_valid(&schema, line);
        // The seed's LogQL: `| json | level="error"` and `line_format "{{.message}}"`.
        assert!(line["message"].is_string(), "message on every line: {line}");
        let level = line["level"].as_str().unwrap();
        assert_eq!(level, level.to_lowercase());
    }
    let mut by_status: HashMap<u64, usize> = HashMap::new();
    for line in &invocations {
        let status = line["status"].as_u64().unwrap();
        *by_status.entry(status).or_default() += 1;
        let expected_level = match status {
            500.. => "error",
            400..500 => "warn",
            _ => "info",
        };
        assert_eq!(line["level"], expected_level, "{line}");
        if status < 400 {
            assert!(line.get("error").is_none(), "served, no error: {line}");
        }
    }
    assert_eq!(by_status.values().sum::<usize>(), 1000);
    assert_eq!(
        by_status, answered,
        "the lines' statuses are what clients got"
    );
    for status in [200, 201, 404, 405, 413, 422, 500] {
        assert!(
            by_status.contains_key(&status),
            "no {status} in {by_status:?}"
        );
    }

    // Guest lines belong to the request that printed them.
    let by_id: HashMap<&str, &Value> = invocations
        .iter()
        .map(|l| (l["request_id"].as_str().unwrap(), *l))
        .collect();
    let guest: Vec<&Value> = lines.iter().filter(|l| l["source"] == "guest").collect();
    assert!(
        guest.len() >= 142 * 2,
        "hero-created lines and panic messages: {}",
        guest.len()
    );
    let created = guest
        .iter()
        .filter(|l| l["message"] == "hero created")
        .count();
    assert_eq!(created, answered[&201], "one `hero created` line per 201");
    for line in guest {
        let id = line["request_id"]
            .as_str()
            .unwrap_or_else(|| panic!("unattributed guest line {line}"));
        let request = by_id
            .get(id)
            .unwrap_or_else(|| panic!("guest line names an unknown request: {line}"));
        assert_eq!(line["trace_id"], request["trace_id"]);
        assert_eq!(line["component"], request["component"]);
        if line["message"] == "hero created" {
            assert_eq!(
                (request["method"].as_str(), request["status"].as_u64()),
                (Some("POST"), Some(201))
            );
        }
    }
}

#[test]
fn hostile_bytes_in_paths_and_headers_still_give_one_valid_line_each() {
    let app = AppDir::registry();
    let host = start(&app, &[]);
    let requests: &[&[u8]] = &[
        b"GET /a\x1b[31mred HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        b"GET /nul\x00byte HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        b"GET /\xff\xfe\xfd HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        b"GET /a\rb HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nUser-Agent: bad\xff\xfeutf8\r\nConnection: close\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nUser-Agent: esc\x1b[2Jape\r\nConnection: close\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nX-Nul: a\x00b\r\nConnection: close\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nX-Cr: a\rb\r\nConnection: close\r\n\r\n",
        b"GET /%0d%0a%1b%00\"quote HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        b"GET /heroes HTTP/1.1\r\nHost: x\r\nUser-Agent: \"}{\\\"level\\\":\\\"info\r\nConnection: close\r\n\r\n",
    ];
    let before = host.invocations().len();
    for request in requests {
        let response = raw_exchange(host.addr, request, Duration::from_secs(5));
        assert_ne!(
            raw_status(&response),
            0,
            "no response to {:?}",
            String::from_utf8_lossy(request)
        );
    }
    host.wait_for_invocations(before + requests.len());
    std::thread::sleep(Duration::from_millis(300));
    let schema = log_line_schema();
    let raw = host.lines();
    for line in &raw {
        assert!(
            !line.bytes().any(|b| b < 0x20),
            "a raw control byte reached stdout: {line:?}"
        );
    }
    let invocations = host.invocations();
    assert_eq!(
        invocations.len(),
        before + requests.len(),
        "exactly one line per request"
    );
    for line in &invocations[before..] {
        assert_log_line_valid(&schema, line);
    }
    let agents: Vec<&str> = invocations
        .iter()
        .filter_map(|l| l["user_agent"].as_str())
        .collect();
    // Obsolete text (bytes 0x80..0xff) is legal in a header value: the request
    // is served and the value logged with replacement characters. Control
    // bytes make hyper refuse the request (400), which is still logged.
    assert!(agents.contains(&"bad\u{fffd}\u{fffd}utf8"), "{agents:?}");
    let statuses: Vec<u64> = invocations[before..]
        .iter()
        .map(|l| l["status"].as_u64().unwrap())
        .collect();
    assert!(
        statuses.contains(&400) && statuses.contains(&200),
        "{statuses:?}"
    );
}

#[test]
fn unmatched_paths_add_no_series() {
    let _heavy = crate::support::exclusive();
    let app = AppDir::registry();
    let host = std::sync::Arc::new(start(&app, &[]));
    // A request is recorded once its response is flushed, which may be just
    // after the client has read it: wait until `n` are counted.
    let unmatched_line = |text: &str| {
        text.lines()
            .find(|l| {
                l.starts_with("http_server_request_duration_seconds_count")
                    && l.contains(r#"http_route="unmatched""#)
            })
            .map(str::to_owned)
    };
    let recorded = |host: &Host, n: u64| {
        let mut text = String::new();
        wait_until(
            "the unmatched requests recorded",
            Duration::from_secs(10),
            || {
                text = host.metrics_text();
                let count = unmatched_line(&text).and_then(|l| l.rsplit(' ').next()?.parse().ok());
                count.is_some_and(|count: u64| count >= n)
            },
        );
        text
    };
    send(&agent(), "GET", &host.url("/warm-up-unmatched"), None);
    let before = series(&recorded(&host, 1)).len();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let host = host.clone();
            std::thread::spawn(move || {
                let agent = agent();
                for i in 0..2500 {
                    let path = format!("/random/{t}/{i}/{:x}", fastrand_like(t * 10_000 + i));
                    assert_eq!(send(&agent, "GET", &host.url(&path), None).status, 404);
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    // One series for all of them, counting every one.
    let text = recorded(&host, 10_001);
    assert_eq!(
        series(&text).len(),
        before,
        "10,000 unmatched paths added series"
    );
    assert!(!text.contains("/random/"), "a raw path became a label");
    let unmatched = unmatched_line(&text).unwrap();
    assert!(unmatched.ends_with(" 10001"), "{unmatched}");
}

fn fastrand_like(seed: usize) -> u64 {
    (seed as u64)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .rotate_left(17)
}

#[test]
fn guest_lines_are_attributed_merged_and_capped() {
    let _heavy = crate::support::exclusive();
    let app = AppDir::new(&registry_and_chaos_manifest());
    let host = std::sync::Arc::new(start(&app, &[]));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let host = host.clone();
            std::thread::spawn(move || {
                let agent = agent();
                for _ in 0..25 {
                    assert_eq!(
                        send(
                            &agent,
                            "GET",
                            &host.url("/chaos/print?lines=5&json=1&bytes=10"),
                            None
                        )
                        .status,
                        200
                    );
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    let partial = send(
        &agent(),
        "GET",
        &host.url("/chaos/print?lines=2&partial=1&stream=stderr"),
        None,
    );
    assert_eq!(partial.status, 200);
    let long = send(
        &agent(),
        "GET",
        &host.url("/chaos/print?lines=1&bytes=40000"),
        None,
    );
    assert_eq!(long.status, 200);
    host.wait_for_lines("every print request's lines", |lines| {
        lines.iter().filter(|l| l["source"] == "guest").count() > 200 * 5 + 2
    });
    let lines = host.json_lines();
    let prints: HashMap<&str, &Value> = lines
        .iter()
        .filter(|l| is_invocation(l) && l["path"] == "/chaos/print")
        .map(|l| (l["request_id"].as_str().unwrap(), l))
        .collect();
    assert_eq!(prints.len(), 202);
    let mut per_request: HashMap<&str, Vec<&Value>> = HashMap::new();
    for line in lines.iter().filter(|l| l["source"] == "guest") {
        let id = line["request_id"]
            .as_str()
            .expect("every line attributed with sequential reuse");
        assert!(
            prints.contains_key(id),
            "attributed to a request that did not print: {line}"
        );
        per_request.entry(id).or_default().push(line);
    }
    let json_requests = per_request
        .values()
        .filter(|lines| lines.len() == 5)
        .count();
    assert_eq!(
        json_requests, 200,
        "each request has exactly its own five lines"
    );
    for lines in per_request.values().filter(|lines| lines.len() == 5) {
        let seqs: Vec<u64> = lines
            .iter()
            .map(|l| l["seq"].as_u64().expect("guest JSON fields merged"))
            .collect();
        assert_eq!(seqs, [0, 1, 2, 3, 4]);
        assert_eq!(lines[0]["message"], "line 0");
        assert_eq!(lines[0]["stream"], "stdout");
    }
    let stderr: Vec<&Value> = lines
        .iter()
        .filter(|l| l["source"] == "guest" && l["stream"] == "stderr")
        .collect();
    assert_eq!(
        stderr.len(),
        2,
        "the unterminated last line is written at the end of its request"
    );
    assert_eq!(stderr[0]["request_id"], stderr[1]["request_id"]);
    assert_eq!(stderr[1]["level"], "warn");
    let raw = host.lines();
    let long_line = raw
        .iter()
        .find(|l| l.contains("line 0 xxxxxxxxxxxxxxxxxxxx") && l.len() > 8000)
        .expect("the long line");
    assert!(long_line.len() <= 16 * 1024, "{} bytes", long_line.len());
    let long_line: Value = serde_json::from_str(long_line).unwrap();
    assert_eq!(long_line["truncated"], true);
}

#[test]
fn a_stalled_stdout_drops_and_counts_lines_without_stalling_requests() {
    let _heavy = crate::support::exclusive();
    let app = AppDir::new(&registry_and_chaos_manifest());
    let host = start(&app, &[]);
    host.pause_stdout(true);
    let agent = agent();
    // 200 requests print 100,000 lines: more than the pipe and the queue hold.
    for _ in 0..200 {
        let reply = send(
            &agent,
            "GET",
            &host.url("/chaos/print?lines=500&bytes=20"),
            None,
        );
        assert_eq!(reply.status, 200);
    }
    let dropped = host.metric_sum("hero_host_log_dropped_lines_total", "");
    assert!(dropped > 0.0, "lines were dropped and counted");
    // Once the backlog drains, new lines get through again (a line sent
    // while the queue is still full is dropped, and counted).
    host.pause_stdout(false);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        send(&agent, "GET", &host.url("/"), None);
        std::thread::sleep(Duration::from_millis(250));
        if host
            .lines()
            .iter()
            .rev()
            .take(100)
            .any(|l| l.contains(r#""message":"GET / 200""#))
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "logging did not resume"
        );
    }
}

#[test]
fn pretty_format_is_for_people() {
    let app = AppDir::registry();
    let host = start(&app, &["--log-format", "pretty"]);
    assert_eq!(get(&host.url("/heroes")).status, 200);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(line) = host.lines().iter().find(|l| l.contains("GET /heroes 200")) {
            assert!(!line.starts_with('{'), "{line}");
            assert!(line.contains("route=/heroes"), "{line}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no pretty invocation line"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_traceparent_is_continued_in_the_lines_and_passed_to_the_guest() {
    let app = AppDir::new(&registry_and_chaos_manifest());
    let host = start(&app, &[]);
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let request = format!(
        "GET /chaos/headers HTTP/1.1\r\nHost: x\r\ntraceparent: 00-{trace_id}-{caller_span}-01\r\nConnection: close\r\n\r\n"
    );
    let response = raw_exchange(host.addr, request.as_bytes(), Duration::from_secs(10));
    let text = String::from_utf8_lossy(&response);
    assert_eq!(raw_status(&response), 200, "{text}");
    // The guest sees the same trace, with the host's span as its parent.
    let passed = text
        .lines()
        .find_map(|l| l.strip_prefix("traceparent: "))
        .unwrap_or_else(|| panic!("no traceparent reached the guest: {text}"));
    let parts: Vec<&str> = passed.split('-').collect();
    assert_eq!(
        (parts[0], parts[1], parts[3]),
        ("00", trace_id, "01"),
        "{passed}"
    );
    let host_span = parts[2];
    assert_ne!(host_span, caller_span, "the host's own span");

    let line = host.wait_for_line("the traced line", |l| l["path"] == "/chaos/headers");
    assert_eq!(line["trace_id"], trace_id, "{line}");
    assert_eq!(line["span_id"], host_span, "{line}");

    // Without one, each request starts its own trace.
    get(&host.url("/chaos/hello"));
    get(&host.url("/chaos/hello"));
    let lines = host.wait_for_lines("two untraced lines", |lines| {
        lines.iter().filter(|l| l["path"] == "/chaos/hello").count() == 2
    });
    let traces: HashSet<&str> = lines
        .iter()
        .filter(|l| l["path"] == "/chaos/hello")
        .map(|l| l["trace_id"].as_str().unwrap())
        .collect();
    assert_eq!(traces.len(), 2, "{traces:?}");
    assert!(!traces.contains(trace_id));
}

#[test]
fn a_client_that_leaves_mid_request_still_gets_exactly_one_line() {
    let app = AppDir::new(&registry_and_chaos_manifest());
    let host = start(&app, &[]);
    let mut stream = std::net::TcpStream::connect(host.addr).unwrap();
    std::io::Write::write_all(
        &mut stream,
        b"GET /chaos/sleep?ms=1500 HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    drop(stream);
    let lines = host.wait_for_lines("the abandoned request's line", |lines| {
        lines.iter().any(|l| l["path"] == "/chaos/sleep")
    });
    let line = lines.iter().find(|l| l["path"] == "/chaos/sleep").unwrap();
    assert_eq!(line["status"], 499, "{line}");
    assert_eq!(line["level"], "warn", "{line}");
    assert!(
        line["error"].as_str().is_some_and(|e| e.contains("client")),
        "{line}"
    );
    // The guest finishing later adds no second line.
    std::thread::sleep(Duration::from_millis(2000));
    let count = host
        .invocations()
        .iter()
        .filter(|l| l["path"] == "/chaos/sleep")
        .count();
    assert_eq!(count, 1);
    assert_eq!(get(&host.url("/chaos/hello")).status, 200);
}
