//! Slow, hostile and odd clients against the real host over real sockets:
//! heads the host refuses, pipelining, bodies that trickle, readers that
//! stop, shutdown with requests still buffered, idle connections past the
//! cap, and running out of file descriptors.

use std::collections::HashMap;
use std::io::Write;
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{
    AppDir, Host, RawClient, agent, cpu_seconds, get, is_invocation, registry_and_chaos_manifest,
    send, start, start_wrapped, wait_until,
};

const GET_ROOT: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";

/// The invocation line of `request_id`, waiting for it.
fn line_of(host: &Host, request_id: &str) -> Value {
    host.wait_for_line(&format!("the line of {request_id}"), |l| {
        is_invocation(l) && l["request_id"] == request_id
    })
}

/// The host's JSON error, as the host writes every answer of its own.
fn assert_host_json(response: &crate::support::RawResponse, status: u16) {
    assert_eq!(response.status, status, "{response:?}");
    assert_eq!(response.header("content-type"), Some("application/json"));
    let id = response.header("x-request-id").expect("a request id");
    assert!(
        id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "{id}"
    );
    assert!(response.json()["detail"].is_string(), "{response:?}");
}

#[test]
fn refused_heads_get_json_a_request_id_a_close_and_one_line_each() {
    let app = AppDir::registry();
    let host = start(&app, &[]);
    let many_headers: String = (0..200).map(|i| format!("X-{i}: {i}\r\n")).collect();
    // 112 KiB in one write: the head is measured, not the read.
    let huge = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "b".repeat(112 << 10)
    );
    let cases: Vec<(String, u16, Option<&str>, Option<&str>)> = vec![
        (
            "NOT HTTP AT ALL\r\n\r\n".into(),
            400,
            Some("not valid HTTP/1"),
            None,
        ),
        (
            "GET /heroes HTTP/1.1\r\nUser-Agent: probe/1\r\n\r\n".into(),
            400,
            Some("without Host"),
            Some("/heroes"),
        ),
        (
            "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n".into(),
            400,
            Some("more than one Host"),
            Some("/"),
        ),
        (
            "POST /heroes HTTP/1.1\r\nHost: x\r\nContent-Length: 12abc\r\n\r\n".into(),
            400,
            Some("Content-Length"),
            Some("/heroes"),
        ),
        (
            "POST /heroes HTTP/1.1\r\nHost: x\r\nContent-Length: 18446744073709551615\r\n\r\n"
                .into(),
            413,
            None,
            Some("/heroes"),
        ),
        (
            "POST /heroes HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n".into(),
            400,
            Some("Transfer-Encoding"),
            Some("/heroes"),
        ),
        (
            format!("GET / HTTP/1.1\r\nHost: x\r\n{many_headers}\r\n"),
            431,
            Some("over the size or header limit"),
            Some("/"),
        ),
        (huge, 431, Some("over the size or header limit"), Some("/")),
    ];
    for (request, status, error, route) in &cases {
        let mut client = RawClient::connect(host.addr, Duration::from_secs(10));
        client.send(request.as_bytes());
        let response = client.response(false).expect("an answer");
        assert_host_json(&response, *status);
        assert_eq!(response.header("connection"), Some("close"));
        assert!(client.closed(), "the connection closes after a refusal");
        let line = line_of(&host, response.header("x-request-id").unwrap());
        assert_eq!(line["status"], *status);
        assert_eq!(line["level"], "warn");
        assert_eq!(line["route"], route.unwrap_or(""), "{line}");
        match error {
            Some(error) => assert!(line["error"].as_str().unwrap().contains(error), "{line}"),
            None => assert!(line.get("error").is_none(), "{line}"),
        }
    }
    assert_eq!(host.invocations().len(), cases.len(), "one line each");
    // The refused requests are counted with their routes, the same as any.
    let refused_413 = host.metric_sum(
        "http_server_request_duration_seconds_count",
        r#"http_response_status_code="413""#,
    );
    assert_eq!(refused_413, 1.0);
}

#[test]
fn a_refused_head_is_answered_after_the_pipelined_requests_before_it() {
    let app = AppDir::registry();
    let host = start(&app, &[]);
    let body = r#"{"name":"Piped","power":"p"}"#;
    let mut pipeline = GET_ROOT.to_vec();
    pipeline.extend_from_slice(
        format!(
            "POST /heroes HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    pipeline.extend_from_slice(b"DELETE /heroes/x HTTP/1.1\r\n\r\n");
    pipeline.extend_from_slice(GET_ROOT);
    let mut client = RawClient::connect(host.addr, Duration::from_secs(10));
    client.send(&pipeline);
    let statuses: Vec<u16> = (0..3)
        .map(|_| client.response(false).expect("an answer").status)
        .collect();
    assert_eq!(statuses, [200, 201, 400]);
    assert!(client.closed(), "nothing after the refused head is served");
    host.wait_for_invocations(3);
    std::thread::sleep(Duration::from_millis(300));
    let lines = host.invocations();
    let methods: Vec<&str> = lines
        .iter()
        .map(|l| l["method"].as_str().unwrap())
        .collect();
    assert_eq!(methods, ["GET", "POST", "DELETE"]);
}

/// Creates a hero named `name` (power "p"); its id.
fn create_hero(agent: &ureq::Agent, host: &Host, name: &str) -> String {
    let body = format!(r#"{{"name":"{name}","power":"p"}}"#);
    let created = send(agent, "POST", &host.url("/heroes"), Some(&body));
    created.json()["id"].as_str().unwrap().to_owned()
}

#[test]
fn head_no_content_and_not_modified_are_complete_not_client_closed() {
    let app = AppDir::new(&registry_and_chaos_manifest());
    let host = start(&app, &[]);
    let agent = agent();
    let id = create_hero(&agent, &host, "A");
    let cases = [
        ("DELETE", format!("/heroes/{id}"), 204),
        ("HEAD", "/chaos/hello".to_owned(), 200),
        ("HEAD", "/".to_owned(), 405),
        ("GET", "/chaos/status?code=204".to_owned(), 204),
        ("GET", "/chaos/status?code=304".to_owned(), 304),
    ];
    for (method, path, status) in &cases {
        assert_eq!(
            send(&agent, method, &host.url(path), None).status,
            *status,
            "{method} {path}"
        );
    }
    let lines = host.wait_for_invocations(cases.len() + 1);
    for line in &lines {
        assert!(line.get("error").is_none(), "a complete response: {line}");
        assert_ne!(line["status"], 499);
    }
    let closed = host.metric_sum(
        "http_server_request_duration_seconds_count",
        r#"error_type="client_closed""#,
    );
    assert_eq!(closed, 0.0, "no request counted as client_closed");
}

#[test]
fn an_overloaded_request_is_labelled_with_its_route() {
    let app = AppDir::new(&registry_and_chaos_manifest());
    let host = Arc::new(start(&app, &["--max-concurrent-requests", "1"]));
    let sleeper = {
        let host = host.clone();
        std::thread::spawn(move || get(&host.url("/chaos/sleep?ms=2000")).status)
    };
    wait_until(
        "the sleeper to hold the slot",
        Duration::from_secs(10),
        || host.metric_sum("http_server_active_requests", "") >= 1.0,
    );
    let refused = get(&host.url("/heroes"));
    assert_eq!(
        (refused.status, refused.header("retry-after")),
        (503, Some("1"))
    );
    let line = line_of(&host, refused.header("x-request-id").unwrap());
    assert_eq!(line["route"], "/heroes", "{line}");
    let labelled = host.metric_sum(
        "http_server_request_duration_seconds_count",
        r#"error_type="overload""#,
    );
    let text = host.metrics_text();
    assert_eq!(labelled, 1.0);
    assert!(
        text.lines().any(
            |l| l.starts_with("http_server_request_duration_seconds_count")
                && l.contains(r#"error_type="overload""#)
                && l.contains(r#"http_route="/heroes""#)
        ),
        "{text}"
    );
    assert_eq!(sleeper.join().unwrap(), 200);
}

#[test]
fn only_canonical_ulids_name_a_hero() {
    let app = AppDir::registry();
    let host = start(&app, &[]);
    let agent = agent();
    let id = create_hero(&agent, &host, "U");
    assert!(id.starts_with('0'), "{id}");
    assert_eq!(
        send(&agent, "GET", &host.url(&format!("/heroes/{id}")), None).status,
        200
    );
    // `8…` decodes past 128 bits to the same value as `0…`.
    let aliases = [format!("8{}", &id[1..]), id.to_lowercase()];
    for alias in &aliases {
        let reply = send(&agent, "GET", &host.url(&format!("/heroes/{alias}")), None);
        assert_eq!(
            (reply.status, reply.json()),
            (404, json!({"detail": "Hero not found"})),
            "{alias}"
        );
        let delete = send(
            &agent,
            "DELETE",
            &host.url(&format!("/heroes/{alias}")),
            None,
        );
        assert_eq!(delete.status, 404, "{alias}");
    }
    assert_eq!(
        send(&agent, "GET", &host.url(&format!("/heroes/{id}")), None).status,
        200
    );
}

/// A connection that sends a POST head announcing `length` bytes, then
/// one byte at a time when told.
fn slow_body(host: &Host, path: &str, length: usize) -> TcpStream {
    let mut stream = TcpStream::connect(host.addr).unwrap();
    let head = format!("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    stream
}

#[test]
fn slow_bodies_get_408_and_hold_no_request_slot_meanwhile() {
    let _heavy = crate::support::exclusive();
    let app = AppDir::registry();
    let host = Arc::new(start(
        &app,
        &[
            "--max-concurrent-requests",
            "2",
            "--request-body-timeout",
            "2s",
            "--request-body-min-rate",
            "100",
        ],
    ));
    let mut slow: Vec<TcpStream> = (0..20).map(|_| slow_body(&host, "/heroes", 60)).collect();
    let started = Instant::now();
    // One byte a second each (a hundredth of the minimum rate) while a
    // healthy client is served: with two slots, a slow client holding one
    // would show as 503s.
    let healthy = {
        let host = host.clone();
        std::thread::spawn(move || {
            let agent = agent();
            (0..40)
                .map(|_| {
                    std::thread::sleep(Duration::from_millis(50));
                    send(&agent, "GET", &host.url("/"), None).status
                })
                .collect::<Vec<u16>>()
        })
    };
    while started.elapsed() < Duration::from_millis(1500) {
        for stream in &mut slow {
            let _ = stream.write_all(b"{");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let statuses = healthy.join().unwrap();
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    for stream in slow {
        let mut client = RawClient::from_stream(stream, Duration::from_secs(10));
        let response = client.response(false).expect("an answer to the slow body");
        assert_host_json(&response, 408);
        assert_eq!(response.header("connection"), Some("close"));
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(1900), "408 after {took:?}");
        let line = line_of(&host, response.header("x-request-id").unwrap());
        assert_eq!(
            (&line["status"], &line["level"]),
            (&json!(408), &json!("warn"))
        );
        assert_eq!(line["route"], "/heroes");
        assert!(
            line["error"]
                .as_str()
                .unwrap()
                .contains("--request-body-timeout"),
            "{line}"
        );
        assert_eq!(line["instance_reused"], Value::Null, "no guest ran");
    }
    assert_eq!(host.metric_sum("wasm_invocations_total", ""), 40.0);
}

#[test]
fn a_large_body_streams_to_the_guest_under_the_same_limits() {
    let app = AppDir::new(&registry_and_chaos_manifest());
    let host = start(
        &app,
        &[
            "--request-body-timeout",
            "1s",
            "--request-body-min-rate",
            "1MiB",
        ],
    );
    // Over the 64 KiB read ahead: the guest reads it as it comes. 70 KiB
    // earn 70 ms past the second; the rest never comes.
    let mut stream = slow_body(&host, "/chaos/echo", 200 * 1024);
    stream.write_all(&[b'x'; 70 * 1024]).unwrap();
    let mut client = RawClient::from_stream(stream, Duration::from_secs(30));
    let response = client.response(false).expect("an answer");
    assert_host_json(&response, 408);
    let line = line_of(&host, response.header("x-request-id").unwrap());
    assert_eq!(line["status"], 408);
    assert_eq!(line["instance_reused"], false, "the guest ran: {line}");
    assert_eq!(line["request_bytes"], 70 * 1024);
}

/// Stores a value of `size` bytes under `key` through the chaos guest.
fn store_value(host: &Host, key: &str, size: usize) {
    let value = "v".repeat(size);
    let reply = send(
        &agent(),
        "PUT",
        &host.url(&format!("/chaos/kvop?op=set&key={key}")),
        Some(&value),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
}

#[test]
fn a_client_that_stops_reading_is_cut_off_and_logged_as_such() {
    let _heavy = crate::support::exclusive();
    let app = AppDir::new(&registry_and_chaos_manifest());
    let host = start(
        &app,
        &[
            "--response-write-timeout",
            "1s",
            "--max-request-body-size",
            "8MiB",
            "--max-concurrent-requests",
            "2",
        ],
    );
    store_value(&host, "big", 4 << 20);
    // 16 responses of 4 MiB: far more than the socket buffers hold.
    let request = b"GET /chaos/kvop?op=get&key=big HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut client = RawClient::connect(host.addr, Duration::from_secs(30));
    client.send(&request.repeat(16));
    let cut = host.wait_for_line("a request cut for not reading", |l| {
        is_invocation(l)
            && l["error"]
                .as_str()
                .is_some_and(|e| e.contains("stopped reading"))
    });
    assert_eq!(cut["status"], 200, "{cut}");
    assert!(cut["response_bytes"].as_u64().unwrap() <= 4 << 20, "{cut}");
    // The connection is gone, and the client never held the other slot.
    assert!(client.ends(), "the host closed the connection");
    for _ in 0..10 {
        assert_eq!(get(&host.url("/heroes")).status, 200);
    }
    let counted = host.metric_sum(
        "http_server_request_duration_seconds_count",
        r#"error_type="write_timeout""#,
    );
    assert!(counted >= 1.0, "{counted}");
    // Every line is true: no GET of the big value claims it was delivered
    // unless the client could have read it.
    let lines = host.invocations();
    let delivered = lines
        .iter()
        .filter(|l| l["path"] == "/chaos/kvop" && l["method"] == "GET" && l.get("error").is_none())
        .count();
    assert!(delivered < 16, "{delivered} of 16 logged as delivered");
}

#[test]
fn shutdown_answers_every_pipelined_request_it_received() {
    let _heavy = crate::support::exclusive();
    let app = AppDir::new(&registry_and_chaos_manifest());
    let mut host = start(&app, &["--shutdown-grace", "20s"]);
    // Each connection: a slow request, then nine more behind it in the
    // host's buffers when the signal comes.
    let mut pipeline = b"GET /chaos/sleep?ms=1500 HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
    pipeline.extend_from_slice(&GET_ROOT.repeat(9));
    let mut clients: Vec<RawClient> = (0..20)
        .map(|_| {
            let mut client = RawClient::connect(host.addr, Duration::from_secs(30));
            client.send(&pipeline);
            client
        })
        .collect();
    wait_until(
        "the slow requests in flight",
        Duration::from_secs(15),
        || host.metric_sum("http_server_active_requests", "") >= 20.0,
    );
    host.signal("TERM");
    let mut statuses: HashMap<u16, usize> = HashMap::new();
    for client in &mut clients {
        for n in 0..10 {
            let response = client
                .response(false)
                .unwrap_or_else(|| panic!("request {n} got no answer"));
            *statuses.entry(response.status).or_default() += 1;
            if response.status == 503 {
                assert_eq!(response.header("retry-after"), Some("1"));
                assert_host_json(&response, 503);
            }
            let last = n == 9;
            assert_eq!(
                response.header("connection") == Some("close"),
                last,
                "request {n}"
            );
        }
        assert!(client.closed());
    }
    assert_eq!(
        statuses.get(&200),
        Some(&20),
        "the requests in flight: {statuses:?}"
    );
    assert_eq!(
        statuses.get(&503),
        Some(&180),
        "received while draining: {statuses:?}"
    );
    assert_eq!(host.wait(Duration::from_secs(20)).code(), Some(0));
    let lines = host.invocations();
    assert_eq!(lines.len(), 200, "one line per request");
    let drained = lines
        .iter()
        .filter(|l| {
            l["status"] == 503
                && l["error"]
                    .as_str()
                    .is_some_and(|e| e.contains("shutting down"))
        })
        .count();
    assert_eq!(drained, 180);
}

#[test]
fn past_the_idle_cap_the_longest_idle_connections_are_closed() {
    let app = AppDir::registry();
    let host = start(&app, &["--max-idle-connections", "4"]);
    let mut clients: Vec<RawClient> = (0..10)
        .map(|_| {
            let mut client = RawClient::connect(host.addr, Duration::from_secs(2));
            client.send(GET_ROOT);
            assert_eq!(client.response(false).unwrap().status, 200);
            std::thread::sleep(Duration::from_millis(50));
            client
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let mut closed = Vec::new();
    for (n, client) in clients.iter_mut().enumerate() {
        client
            .stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        if client.closed() {
            closed.push(n);
        }
    }
    assert_eq!(
        closed,
        [0, 1, 2, 3, 4, 5],
        "the six longest idle, and only them"
    );
    for client in &mut clients[6..] {
        client
            .stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        client.send(GET_ROOT);
        assert_eq!(client.response(false).unwrap().status, 200);
    }
    let loud: Vec<Value> = host
        .json_lines()
        .into_iter()
        .filter(|l| is_invocation(l) && l.get("error").is_some())
        .collect();
    assert!(
        loud.is_empty(),
        "closing idle connections fails no request: {loud:?}"
    );
}

#[test]
fn out_of_file_descriptors_the_host_backs_off_and_recovers() {
    let app = AppDir::registry();
    let host = start_wrapped(
        &app,
        &["--header-read-timeout", "60s"],
        &["prlimit", "--nofile=96:96", "--"],
    );
    assert_eq!(get(&host.url("/")).status, 200);
    // More connections than descriptors left: accepting fails (EMFILE).
    let hoard: Vec<TcpStream> = (0..150)
        .map(|_| TcpStream::connect(host.addr).unwrap())
        .collect();
    let warning = host.wait_for_line("the back-off warning", |l| {
        l["message"] == "accepting a connection failed; backing off"
    });
    assert_eq!(warning["level"], "warn");
    // Out of descriptors, the host closes its longest idle connections
    // (the hoard's oldest) to take new ones: a healthy client gets in.
    let started = Instant::now();
    let reply = get(&host.url("/"));
    assert_eq!(reply.status, 200);
    println!(
        "served in {:?} with the descriptors taken",
        started.elapsed()
    );
    host.wait_for_line("accepting again", |l| {
        l["message"] == "accepting connections again"
    });
    let cpu_before = cpu_seconds(host.pid());
    std::thread::sleep(Duration::from_secs(2));
    let spent = cpu_seconds(host.pid()) - cpu_before;
    assert!(
        spent < 1.0,
        "backing off, not spinning: {spent} s of CPU in 2 s"
    );
    drop(hoard);
}

/// Counts what a set of requests got back.
#[derive(Default)]
struct Tally(AtomicUsize);

impl Tally {
    fn add(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    fn get(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

#[test]
fn refused_and_accepted_requests_on_many_connections_each_get_one_line() {
    let app = AppDir::registry();
    let host = Arc::new(start(&app, &[]));
    let answered = Arc::new(Tally::default());
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let host = host.clone();
            let answered = answered.clone();
            std::thread::spawn(move || {
                for n in 0..10 {
                    let mut client = RawClient::connect(host.addr, Duration::from_secs(10));
                    let bad = (t + n) % 2 == 0;
                    client.send(if bad {
                        b"GET / HTTP/1.1\r\n\r\n"
                    } else {
                        GET_ROOT
                    });
                    let status = client.response(false).expect("an answer").status;
                    assert_eq!(status, if bad { 400 } else { 200 });
                    answered.add();
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    assert_eq!(answered.get(), 80);
    let lines = host.wait_for_invocations(80);
    let refused = lines.iter().filter(|l| l["status"] == 400).count();
    assert_eq!((lines.len(), refused), (80, 40));
}

#[test]
fn a_deadline_passing_after_the_guest_answered_cuts_nothing() {
    let app = AppDir::new(&registry_and_chaos_manifest());
    let host = start(&app, &["--request-timeout", "1s"]);
    // The guest answers at once and keeps a task running past the deadline
    // (the instance may be ended for it; the answered request is not).
    let reply = get(&host.url("/chaos/linger?ms=1500"));
    assert_eq!((reply.status, reply.body.as_str()), (200, "lingering"));
    std::thread::sleep(Duration::from_secs(2));
    let lines = host.invocations();
    assert_eq!(lines.len(), 1, "one line: {lines:?}");
    assert_eq!(lines[0]["status"], 200);
    assert!(lines[0].get("error").is_none(), "{}", lines[0]);
    let failed = host.metric_sum("http_server_request_duration_seconds_count", "error_type=");
    assert_eq!(failed, 0.0, "no request failed");
}
