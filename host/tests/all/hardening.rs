//! Surviving bad guests, bad clients, overload, shutdown and a shared Redis:
//! each against the real host, real components and real servers.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{
    AppDir, Host, Redis, agent, app_manifest, get, http_component, is_invocation, post_new_hero,
    raw_exchange, raw_status, registry_and_chaos_manifest, send, start, start_with_env, wait_until,
};

// ---------------------------------------------------------------- key-value

/// The chaos guest on `/chaos/...`, with the stores `conformance` and `other`.
fn conformance_manifest() -> String {
    app_manifest(
        "kv-conformance",
        &http_component(
            "/chaos/...",
            "chaos",
            "{chaos}",
            r#"key_value_stores = ["conformance", "other"]"#,
        ),
    )
}

fn kvop(host: &Host, label: &str, op: &str, key: &str, value: Option<&str>) -> (u16, String) {
    let key: String = key.bytes().map(|b| format!("%{b:02X}")).collect();
    let method = if value.is_some() { "PUT" } else { "GET" };
    let reply = send(
        &agent(),
        method,
        &host.url(&format!("/chaos/kvop?label={label}&op={op}&key={key}")),
        value,
    );
    (reply.status, reply.body)
}

/// The key-value behaviour every backend must show, through a real guest.
fn key_value_conformance(host: &Host) {
    let store = "conformance";
    assert_eq!(
        kvop(host, store, "keys", "", None),
        (200, String::new()),
        "starts empty"
    );
    assert_eq!(kvop(host, store, "get", "a", None).0, 404);
    assert_eq!(
        kvop(host, store, "exists", "a", None),
        (200, "false".into())
    );
    assert_eq!(kvop(host, store, "set", "a", Some("one")).0, 200);
    assert_eq!(kvop(host, store, "get", "a", None), (200, "one".into()));
    assert_eq!(kvop(host, store, "exists", "a", None), (200, "true".into()));
    assert_eq!(
        kvop(host, store, "set", "a", Some("two")).0,
        200,
        "overwrite"
    );
    assert_eq!(kvop(host, store, "get", "a", None), (200, "two".into()));
    assert_eq!(kvop(host, store, "set", "empty", Some("")).0, 200);
    assert_eq!(
        kvop(host, store, "get", "empty", None),
        (200, String::new()),
        "an empty value is a value"
    );
    let unicode = "héros/ü 🦀:*?[x]";
    assert_eq!(kvop(host, store, "set", unicode, Some("crab")).0, 200);
    assert_eq!(
        kvop(host, store, "get", unicode, None),
        (200, "crab".into())
    );
    let large = "v".repeat(300 * 1024);
    assert_eq!(kvop(host, store, "set", "large", Some(&large)).0, 200);
    assert_eq!(kvop(host, store, "get", "large", None).1.len(), large.len());
    for i in 0..50 {
        assert_eq!(
            kvop(host, store, "set", &format!("k{i:02}"), Some("x")).0,
            200
        );
    }
    let (status, keys) = kvop(host, store, "keys", "", None);
    assert_eq!(status, 200);
    let mut expected: Vec<String> = (0..50).map(|i| format!("k{i:02}")).collect();
    expected.extend(["a".into(), "empty".into(), "large".into(), unicode.into()]);
    expected.sort();
    assert_eq!(keys.lines().collect::<Vec<_>>(), expected);
    // Labels are separate stores, even on one backend.
    assert_eq!(kvop(host, "other", "set", "a", Some("elsewhere")).0, 200);
    assert_eq!(kvop(host, store, "get", "a", None), (200, "two".into()));
    assert_eq!(kvop(host, "other", "keys", "", None), (200, "a\n".into()));
    assert_eq!(kvop(host, store, "delete", "a", None).0, 200);
    assert_eq!(
        kvop(host, store, "delete", "a", None).0,
        200,
        "deleting an absent key is fine"
    );
    assert_eq!(kvop(host, store, "get", "a", None).0, 404);
    assert_eq!(
        kvop(host, "other", "get", "a", None),
        (200, "elsewhere".into())
    );
    let (status, error) = kvop(host, "unlisted", "get", "a", None);
    assert_eq!((status, error.as_str()), (403, "open: Error::NoSuchStore"));
}

#[test]
fn sqlite_store_conforms() {
    let app = AppDir::new(&conformance_manifest());
    let config = app.write(
        "runtime-config.toml",
        "[key_value_store.conformance]\ntype = \"spin\"\npath = \"kv.db\"\n[key_value_store.other]\ntype = \"spin\"\npath = \"kv.db\"\n",
    );
    let host = start(&app, &["--runtime-config-file", config.to_str().unwrap()]);
    key_value_conformance(&host);
}

#[test]
fn redis_store_conforms() {
    let redis = Redis::start();
    let app = AppDir::new(&conformance_manifest());
    let url = redis.url();
    let config = app.write(
        "runtime-config.toml",
        &format!("[key_value_store.conformance]\ntype = \"redis\"\nurl = \"{url}\"\n[key_value_store.other]\ntype = \"redis\"\nurl = \"{url}\"\n"),
    );
    let host = start(&app, &["--runtime-config-file", config.to_str().unwrap()]);
    key_value_conformance(&host);
}

fn redis_config(app: &AppDir, redis: &Redis) -> String {
    let path = app.write(
        "runtime-config.toml",
        &format!(
            "[key_value_store.default]\ntype = \"redis\"\nurl = \"{}\"\n",
            redis.url()
        ),
    );
    path.to_str().unwrap().to_owned()
}

#[test]
fn two_hosts_on_one_redis_share_heroes() {
    let redis = Redis::start();
    let (app_a, app_b) = (AppDir::registry(), AppDir::registry());
    let host_a = start(
        &app_a,
        &["--runtime-config-file", &redis_config(&app_a, &redis)],
    );
    let host_b = start(
        &app_b,
        &["--runtime-config-file", &redis_config(&app_b, &redis)],
    );
    let agent = agent();
    let id = post_new_hero(
        &agent,
        &host_a.url("/heroes"),
        r#"{"name":"Shared","power":"replication"}"#,
    );
    let seen = send(&agent, "GET", &host_b.url(&format!("/heroes/{id}")), None);
    assert_eq!(
        (seen.status, seen.json()["name"].clone()),
        (200, json!("Shared"))
    );
    assert_eq!(
        send(
            &agent,
            "DELETE",
            &host_b.url(&format!("/heroes/{id}")),
            None
        )
        .status,
        204
    );
    assert_eq!(
        send(&agent, "GET", &host_a.url(&format!("/heroes/{id}")), None).status,
        404
    );
}

#[test]
fn a_redis_outage_gives_5xx_and_clear_logs_then_recovers_with_nothing_lost() {
    let mut redis = Redis::start();
    let app = AppDir::registry();
    let host = start(
        &app,
        &["--runtime-config-file", &redis_config(&app, &redis)],
    );
    let agent = agent();
    let ids: Vec<String> = (0..3)
        .map(|i| {
            let reply = send(
                &agent,
                "POST",
                &host.url("/heroes"),
                Some(&format!(r#"{{"name":"before {i}","power":"p"}}"#)),
            );
            assert_eq!(reply.status, 201);
            reply.json()["id"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(get(&host.admin_url("/readyz")).status, 200);

    redis.stop();
    let failed = send(
        &agent,
        "POST",
        &host.url("/heroes"),
        Some(r#"{"name":"during","power":"p"}"#),
    );
    assert_eq!(
        (failed.status, failed.json()),
        (500, json!({"detail": "Internal Server Error"}))
    );
    assert_eq!(send(&agent, "GET", &host.url("/heroes"), None).status, 500);
    let ready = get(&host.admin_url("/readyz"));
    assert_eq!(ready.status, 503);
    assert!(
        ready.body.contains("key-value store `default` unreachable"),
        "{}",
        ready.body
    );
    let lines = host.wait_for_lines("the failure lines", |lines| {
        lines
            .iter()
            .any(|l| l["message"] == "key-value operation failed")
            && lines.iter().any(|l| is_invocation(l) && l["status"] == 500)
    });
    let warning = lines
        .iter()
        .find(|l| l["message"] == "key-value operation failed")
        .unwrap();
    assert_eq!(
        (
            warning["level"].as_str(),
            warning["backend"].as_str(),
            warning["store"].as_str()
        ),
        (Some("warn"), Some("redis"), Some("default"))
    );
    let invocation = lines
        .iter()
        .find(|l| is_invocation(l) && l["status"] == 500)
        .unwrap();
    assert_eq!(invocation["level"], "error");
    let error = invocation["error"]
        .as_str()
        .expect("the invocation line says why");
    assert!(
        error.contains("key-value") && error.contains("redis"),
        "{error}"
    );
    assert!(
        host.metric_sum(
            "key_value_operation_duration_seconds_count",
            r#"outcome="error""#
        ) > 0.0
    );

    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(30);
    let after = loop {
        let reply = send(
            &agent,
            "POST",
            &host.url("/heroes"),
            Some(r#"{"name":"after","power":"p"}"#),
        );
        if reply.status == 201 {
            break reply.json()["id"].as_str().unwrap().to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "did not recover: {} {}",
            reply.status,
            reply.body
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    for id in ids.iter().chain([&after]) {
        assert_eq!(
            send(&agent, "GET", &host.url(&format!("/heroes/{id}")), None).status,
            200,
            "{id} lost"
        );
    }
    assert_eq!(get(&host.admin_url("/readyz")).status, 200);
}

#[test]
fn starts_not_ready_while_redis_is_down() {
    let mut redis = Redis::start();
    redis.stop();
    let app = AppDir::registry();
    let host = start(
        &app,
        &["--runtime-config-file", &redis_config(&app, &redis)],
    );
    assert_eq!(get(&host.admin_url("/readyz")).status, 503);
    assert_eq!(
        get(&host.admin_url("/healthz")).status,
        200,
        "alive all the same"
    );
    redis.restart();
    wait_until(
        "readiness after Redis came back",
        Duration::from_secs(30),
        || get(&host.admin_url("/readyz")).status == 200,
    );
    assert_eq!(
        send(&agent(), "GET", &host.url("/heroes"), None).status,
        200
    );
}

#[test]
fn writes_waiting_for_another_process_lock_hold_up_no_other_request() {
    let app = AppDir::registry();
    let host = Arc::new(start(&app, &[]));
    let stored = send(
        &agent(),
        "POST",
        &host.url("/heroes"),
        Some(r#"{"name":"Before","power":"p"}"#),
    );
    assert_eq!(stored.status, 201);
    let id = stored.json()["id"].as_str().unwrap().to_owned();

    // Another process on the same file (as `spin up` or a second host would
    // be) holds the write lock; more writers arrive than the host has threads.
    let other = rusqlite::Connection::open(app.path("state/sqlite_key_value.db")).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    let writers: Vec<_> = (0..4)
        .map(|n| {
            let host = host.clone();
            std::thread::spawn(move || {
                let body = json!({"name": format!("waiting {n}"), "power": "p"}).to_string();
                send(&agent(), "POST", &host.url("/heroes"), Some(&body)).status
            })
        })
        .collect();
    wait_until("the writers to get in", Duration::from_secs(10), || {
        host.metric_sum("http_server_active_requests", "") >= 4.0
    });
    std::thread::sleep(Duration::from_millis(300)); // into the store call

    // Reads (WAL readers take no write lock) and other routes are served.
    let read = send(&agent(), "GET", &host.url(&format!("/heroes/{id}")), None);
    assert_eq!(
        (read.status, read.json()["name"].clone()),
        (200, json!("Before"))
    );
    assert_eq!(get(&host.url("/")).status, 200);
    assert!(
        writers.iter().all(|w| !w.is_finished()),
        "the lock is still held, so the writers still wait"
    );

    other.execute_batch("COMMIT").unwrap();
    for writer in writers {
        assert_eq!(
            writer.join().unwrap(),
            201,
            "committed once the lock is free"
        );
    }
    let listed = send(&agent(), "GET", &host.url("/heroes"), None).json();
    assert_eq!(listed.as_array().unwrap().len(), 5);
}

// ---------------------------------------------------------------- guests

#[test]
fn an_endless_guest_gets_504_on_time_while_healthy_requests_succeed() {
    let _heavy = crate::support::exclusive();
    let app = AppDir::new(&registry_and_chaos_manifest());
    let host = Arc::new(start(&app, &["--request-timeout", "1s"]));
    let start_line = Arc::new(Barrier::new(501));
    let looping = {
        let host = host.clone();
        let start_line = start_line.clone();
        std::thread::spawn(move || {
            start_line.wait();
            let started = Instant::now();
            let reply = send(&agent(), "GET", &host.url("/chaos/loop"), None);
            (reply, started.elapsed())
        })
    };
    let healthy: Vec<_> = (0..500)
        .map(|_| {
            let host = host.clone();
            let start_line = start_line.clone();
            std::thread::spawn(move || {
                let agent = agent();
                start_line.wait();
                send(&agent, "GET", &host.url("/"), None).status
            })
        })
        .collect();
    let statuses: Vec<u16> = healthy.into_iter().map(|t| t.join().unwrap()).collect();
    let (reply, took) = looping.join().unwrap();
    assert!(
        statuses.iter().all(|s| *s == 200),
        "healthy requests failed: {:?}",
        statuses.iter().filter(|s| **s != 200).collect::<Vec<_>>()
    );
    assert_eq!(
        (reply.status, reply.json()),
        (504, json!({"detail": "Gateway Timeout"}))
    );
    // From the host's own clock (request head in, response out), so that
    // client-side thread scheduling on a busy machine does not count. The
    // epoch callback interrupts the guest at the first tick past its deadline
    // (1,003–1,036 ms here, alone); with 500 requests in flight on two cores
    // the 504's write queues behind them (1,110 and 1,202 ms seen on CI), so
    // the bound is the timeout plus 400 ms, and never before the deadline.
    // That bound also admits the instance's backstop (timeout + 250 ms).
    let lines = host.wait_for_lines("the timeout line", |lines| {
        lines.iter().any(|l| is_invocation(l) && l["status"] == 504)
    });
    let line = lines.iter().find(|l| l["status"] == 504).unwrap();
    let host_ms = line["duration_ms"].as_f64().unwrap();
    assert!(
        (1000.0..1400.0).contains(&host_ms),
        "504 after {host_ms} ms, not within the 1 s timeout + 400 ms"
    );
    assert!(took < Duration::from_secs(3), "the client waited {took:?}");
    assert_eq!(line["level"], "error");
    assert!(
        line["error"]
            .as_str()
            .unwrap()
            .contains("--request-timeout"),
        "{line}"
    );
    assert_eq!(
        host.metric_sum("wasm_guest_traps_total", r#"wasm_trap_kind="timeout""#),
        1.0
    );
    assert_eq!(
        host.metric_sum(
            "http_server_request_duration_seconds_count",
            r#"error_type="timeout""#
        ),
        1.0
    );
}

/// A spinning guest shares its thread: with one runtime worker
/// (`TOKIO_WORKER_THREADS=1`), the admin port and another component answer
/// while the loop runs, not after its timeout. The epoch callback makes a
/// guest that has run through a whole tick yield; a guest that was merely
/// running when the tick came goes on (the bench prices that: yielding at
/// every tick cost hello's p99 on one core).
#[test]
fn a_spinning_guest_yields_its_one_worker_thread_to_other_requests() {
    let _heavy = crate::support::exclusive();
    let app = AppDir::new(&registry_and_chaos_manifest());
    let host = Arc::new(start_with_env(
        &app,
        &["--request-timeout", "5s"],
        &[("TOKIO_WORKER_THREADS", "1")],
    ));
    let looping = {
        let host = host.clone();
        std::thread::spawn(move || send(&agent(), "GET", &host.url("/chaos/loop"), None).status)
    };
    // A worker the loop starved would answer no scrape until the timeout.
    wait_until(
        "the admin port to report the loop in flight",
        Duration::from_secs(4),
        || host.metric_sum("http_server_active_requests", "") >= 1.0,
    );
    let agent = agent();
    for _ in 0..20 {
        assert_eq!(send(&agent, "GET", &host.url("/"), None).status, 200);
    }
    assert!(
        !looping.is_finished(),
        "the other requests were answered while the loop still ran"
    );
    assert_eq!(looping.join().unwrap(), 504);
    // The loop's time counts as guest CPU time: one outermost guest call,
    // through its yields, up to the interruption (most of the 5 s; a tenth
    // of it allows for a busy machine).
    let cpu = host.metric_sum(
        "wasm_guest_cpu_time_seconds_total",
        r#"spin_component="chaos""#,
    );
    assert!(cpu >= 0.5, "guest CPU time {cpu} s for a 5 s loop");
}

#[test]
fn a_sleeping_guest_past_its_deadline_gets_504() {
    let _heavy = crate::support::exclusive();
    let app = AppDir::new(&registry_and_chaos_manifest());
    let host = start(&app, &["--request-timeout", "500ms"]);
    let started = Instant::now();
    let reply = send(&agent(), "GET", &host.url("/chaos/sleep?ms=5000"), None);
    assert_eq!(reply.status, 504);
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the guest's own 5 s sleep was not awaited"
    );
    assert_eq!(
        send(&agent(), "GET", &host.url("/chaos/hello"), None).status,
        200
    );
    // The instance still waiting is ended from outside and counted as a
    // timeout, not as a host error.
    let deadline = Instant::now() + Duration::from_secs(10);
    while host.metric_sum("wasm_guest_traps_total", r#"wasm_trap_kind="timeout""#) < 1.0 {
        assert!(
            Instant::now() < deadline,
            "no timeout counted: {}",
            get(&host.admin_url("/metrics")).body
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        host.metric_sum("wasm_guest_traps_total", r#"wasm_trap_kind="host_error""#),
        0.0
    );
}

#[test]
fn a_trap_is_a_500_and_the_next_request_succeeds() {
    let app = AppDir::new(&registry_and_chaos_manifest());
    let host = start(&app, &[]);
    let agent = agent();
    let trapped = send(&agent, "GET", &host.url("/chaos/trap"), None);
    assert_eq!(
        (trapped.status, trapped.json()),
        (500, json!({"detail": "Internal Server Error"}))
    );
    assert_eq!(trapped.header("content-type"), Some("application/json"));
    assert_eq!(
        send(&agent, "GET", &host.url("/chaos/hello"), None).status,
        200
    );
    let lines = host.wait_for_lines("the trap lines", |lines| {
        lines
            .iter()
            .any(|l| l["source"] == "guest" && l["stream"] == "stderr")
            && lines.iter().any(|l| l["path"] == "/chaos/trap")
    });
    let invocation = lines.iter().find(|l| l["path"] == "/chaos/trap").unwrap();
    assert!(
        invocation["error"]
            .as_str()
            .unwrap()
            .contains("guest trapped (unreachable)"),
        "{invocation}"
    );
    let stderr: Vec<&Value> = lines
        .iter()
        .filter(|l| l["source"] == "guest" && l["stream"] == "stderr")
        .collect();
    assert!(
        stderr
            .iter()
            .all(|l| l["request_id"] == invocation["request_id"]),
        "the panic message belongs to its request"
    );
    assert!(
        stderr.iter().any(|l| l["message"]
            .as_str()
            .unwrap()
            .contains("chaos asked to trap")),
        "{stderr:?}"
    );
}

#[test]
fn going_over_the_memory_limit_is_a_500_named_out_of_memory() {
    let app = AppDir::new(&registry_and_chaos_manifest());
    let host = start(&app, &["--max-instance-memory", "32MiB"]);
    assert_eq!(get(&host.url("/chaos/alloc?mb=8")).status, 200);
    assert_eq!(get(&host.url("/chaos/alloc?mb=64")).status, 500);
    assert_eq!(
        get(&host.url("/chaos/alloc?mb=8")).status,
        200,
        "a fresh instance serves the next request"
    );
    assert_eq!(
        host.metric_sum(
            "wasm_guest_traps_total",
            r#"wasm_trap_kind="out_of_memory""#
        ),
        1.0
    );
}

#[test]
fn ten_thousand_traps_leave_memory_where_it_was() {
    let _heavy = crate::support::exclusive();
    let app = AppDir::new(&registry_and_chaos_manifest());
    let host = Arc::new(start(&app, &[]));
    let trap = |host: &Arc<Host>, count: usize| {
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let host = host.clone();
                std::thread::spawn(move || {
                    let agent = agent();
                    for _ in 0..count / 4 {
                        assert_eq!(
                            send(&agent, "GET", &host.url("/chaos/trap"), None).status,
                            500
                        );
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
    };
    // Warm up: pool slots, allocator arenas, the log queue.
    trap(&host, 400);
    std::thread::sleep(Duration::from_millis(500));
    let before = host.rss_kb();
    trap(&host, 10_000);
    std::thread::sleep(Duration::from_millis(500));
    let after = host.rss_kb();
    assert_eq!(get(&host.url("/chaos/hello")).status, 200);
    assert!(
        after as f64 <= before as f64 * 1.10,
        "RSS grew from {before} kB to {after} kB after 10,000 traps"
    );
}

// ---------------------------------------------------------------- clients

#[test]
fn a_body_announced_over_the_limit_is_refused_before_the_guest_runs() {
    let app = AppDir::new(&registry_and_chaos_manifest());
    let host = start(&app, &[]);
    // 16 MiB: more than the socket buffers hold, so the client is still
    // writing when the 413 goes out; the host's lingering close drains the
    // rest instead of resetting the connection under the client's writes.
    let body = "x".repeat(16 << 20);
    let reply = send(&agent(), "POST", &host.url("/chaos/echo"), Some(&body));
    assert_eq!(
        (reply.status, reply.json()),
        (413, json!({"detail": "Request body too large"}))
    );
    let lines = host.wait_for_lines("the 413 line", |lines| {
        lines.iter().any(|l| l["status"] == 413)
    });
    let line = lines.iter().find(|l| l["status"] == 413).unwrap();
    assert!(line.get("instance_reused").is_some(), "{line}");
    assert_eq!(line["instance_reused"], Value::Null, "no guest ran");
    assert_eq!(
        host.metric_sum("wasm_invocations_total", ""),
        0.0,
        "no guest ran"
    );
    // The same checks see a guest that does run.
    let reply = send(&agent(), "POST", &host.url("/chaos/echo"), Some("small"));
    assert_eq!(reply.status, 200);
    let lines = host.wait_for_lines("the 200 line", |lines| {
        lines.iter().any(|l| l["status"] == 200)
    });
    let line = lines.iter().find(|l| l["status"] == 200).unwrap();
    assert_eq!(line["instance_reused"], false, "{line}");
    assert_eq!(host.metric_sum("wasm_invocations_total", ""), 1.0);
}

#[test]
fn a_chunked_body_over_the_limit_is_a_413() {
    let app = AppDir::new(&registry_and_chaos_manifest());
    let host = start(&app, &["--max-request-body-size", "256KiB"]);
    let mut stream = TcpStream::connect(host.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .write_all(b"POST /chaos/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
        .unwrap();
    let chunk = format!("{:x}\r\n{}\r\n", 64 * 1024, "y".repeat(64 * 1024));
    // The host answers once the limit is passed, then lingers: the rest of
    // the body is read and discarded, so the client's writes all succeed.
    for i in 0..256 {
        stream
            .write_all(chunk.as_bytes())
            .unwrap_or_else(|e| panic!("chunk {i}: the host reset the connection: {e}"));
    }
    stream.write_all(b"0\r\n\r\n").unwrap();
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    assert_eq!(
        raw_status(&response),
        413,
        "{}",
        String::from_utf8_lossy(&response)
    );
}

#[test]
fn too_many_headers_get_431_and_a_long_uri_414() {
    let app = AppDir::registry();
    let host = start(&app, &[]);
    let mut request = String::from("GET / HTTP/1.1\r\nHost: x\r\n");
    for i in 0..200 {
        request.push_str(&format!("X-Header-{i}: {i}\r\n"));
    }
    request.push_str("Connection: close\r\n\r\n");
    assert_eq!(
        raw_status(&raw_exchange(
            host.addr,
            request.as_bytes(),
            Duration::from_secs(5)
        )),
        431
    );
    let long = format!("/heroes?team={}", "a".repeat(9 * 1024));
    assert_eq!(get(&host.url(&long)).status, 414);
    assert_eq!(get(&host.url("/")).status, 200);
}

#[test]
fn idle_keep_alive_connections_are_closed_quietly_busy_ones_kept() {
    let app = AppDir::registry();
    let host = start(&app, &["--header-read-timeout", "2s"]);
    let request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    // The welcome is chunked: a response is whole at its last, empty chunk
    // (which may arrive in a read of its own).
    let read_response = |stream: &mut TcpStream| {
        let mut response = Vec::new();
        let mut buf = [0u8; 4096];
        while !response.ends_with(b"\r\n0\r\n\r\n") {
            let n = stream.read(&mut buf).unwrap();
            assert!(n > 0, "closed mid-response: {response:?}");
            response.extend_from_slice(&buf[..n]);
        }
        assert!(
            response.starts_with(b"HTTP/1.1 200"),
            "{:?}",
            String::from_utf8_lossy(&response)
        );
    };
    let mut stream = TcpStream::connect(host.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    // A request every 400 ms: the timeout counts idle time, not the
    // connection's age, so 2.8 s of use outlive the 2 s timeout.
    for _ in 0..7 {
        stream.write_all(request).unwrap();
        read_response(&mut stream);
        std::thread::sleep(Duration::from_millis(400));
    }
    stream.write_all(request).unwrap();
    read_response(&mut stream);
    // Then idle: the host closes the connection (EOF, not the read timeout).
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).expect("closed by the host");
    assert!(rest.is_empty(), "{rest:?}");

    host.wait_for_invocations(8);
    let lines = host.json_lines();
    // Start-up may warn about the machine (a low open-files limit); what
    // the connection and its requests log must stay quiet.
    let loud: Vec<_> = lines
        .iter()
        .filter(|l| l["target"] == "hero_host::server" || is_invocation(l))
        .filter(|l| l["level"] == "warn" || l["level"] == "error")
        .collect();
    assert!(loud.is_empty(), "an idle close is not a failure: {loud:?}");
}

#[test]
fn slow_clients_are_cut_off_while_healthy_clients_see_no_errors() {
    let _heavy = crate::support::exclusive();
    let app = AppDir::registry();
    let host = Arc::new(start(&app, &["--header-read-timeout", "2s"]));
    // Each slow connection with when it connected and when it was closed.
    let mut slow: Vec<(TcpStream, Instant, Option<Instant>)> = (0..1000)
        .map(|_| {
            let mut stream = TcpStream::connect(host.addr).unwrap();
            let connected = Instant::now();
            stream.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap();
            stream.set_nonblocking(true).unwrap();
            (stream, connected, None)
        })
        .collect();
    let healthy_failures = Arc::new(AtomicUsize::new(0));
    let healthy: Vec<_> = (0..4)
        .map(|_| {
            let host = host.clone();
            let failures = healthy_failures.clone();
            std::thread::spawn(move || {
                let agent = agent();
                for _ in 0..100 {
                    if send(&agent, "GET", &host.url("/"), None).status != 200 {
                        failures.fetch_add(1, Ordering::SeqCst);
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
        })
        .collect();
    // Trickle a byte every 100 ms per connection until the host closes it.
    let started = Instant::now();
    let mut open = slow.len();
    while open > 0 && started.elapsed() < Duration::from_secs(15) {
        open = 0;
        for (stream, _, closed_at) in slow.iter_mut().filter(|(.., c)| c.is_none()) {
            let mut byte = [0u8; 1];
            let closed = match stream.read(&mut byte) {
                Ok(0) => true,
                Ok(_) => false,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    stream.write_all(b"X").is_err()
                }
                Err(_) => true,
            };
            if closed {
                *closed_at = Some(Instant::now());
            } else {
                open += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    for thread in healthy {
        thread.join().unwrap();
    }
    assert_eq!(
        open,
        0,
        "{open} slow connections still open after {:?}",
        started.elapsed()
    );
    // None closed before the 2 s header timeout (100 ms polling slack).
    let earliest = slow
        .iter()
        .filter_map(|(_, connected, closed)| Some(closed.as_ref()?.duration_since(*connected)))
        .min()
        .unwrap();
    assert!(
        earliest >= Duration::from_millis(1900),
        "a slow connection was closed after {earliest:?}, before the header timeout"
    );
    assert_eq!(healthy_failures.load(Ordering::SeqCst), 0);
}

#[test]
fn past_the_concurrency_limit_requests_get_503_with_retry_after() {
    let _heavy = crate::support::exclusive();
    let app = AppDir::new(&registry_and_chaos_manifest());
    let host = Arc::new(start(&app, &["--max-concurrent-requests", "4"]));
    let finished = Arc::new(AtomicUsize::new(0));
    let sleepers: Vec<_> = (0..4)
        .map(|_| {
            let host = host.clone();
            let finished = finished.clone();
            std::thread::spawn(move || {
                let status = send(&agent(), "GET", &host.url("/chaos/sleep?ms=3000"), None).status;
                finished.fetch_add(1, Ordering::SeqCst);
                status
            })
        })
        .collect();
    wait_until("the sleepers to get in", Duration::from_secs(10), || {
        host.metric_sum("http_server_active_requests", "") >= 4.0
    });
    let refused = send(&agent(), "GET", &host.url("/"), None);
    assert_eq!(
        finished.load(Ordering::SeqCst),
        0,
        "the refusal came while the limit was full, without waiting"
    );
    assert_eq!(
        (refused.status, refused.header("retry-after")),
        (503, Some("1"))
    );
    for sleeper in sleepers {
        assert_eq!(sleeper.join().unwrap(), 200);
    }
    assert_eq!(
        get(&host.url("/")).status,
        200,
        "served again once below the limit"
    );
}

#[test]
fn sigterm_under_load_drains_every_request_and_exits_zero() {
    let _heavy = crate::support::exclusive();
    let app = AppDir::new(&registry_and_chaos_manifest());
    let mut host = start(&app, &["--shutdown-grace", "20s"]);
    let url = host.url("/chaos/sleep?ms=2000");
    let admin = host.admin_url("/readyz");
    let finished = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..200)
        .map(|_| {
            let url = url.clone();
            let finished = finished.clone();
            std::thread::spawn(move || {
                let reply = send(&agent(), "GET", &url, None);
                finished.fetch_add(1, Ordering::SeqCst);
                reply.status
            })
        })
        .collect();
    wait_until(
        "all 200 requests in flight",
        Duration::from_secs(15),
        || host.metric_sum("http_server_active_requests", "") >= 200.0,
    );
    assert_eq!(get(&admin).status, 200);
    host.signal("TERM");
    wait_until("readiness to flip to 503", Duration::from_secs(5), || {
        get(&admin).status == 503
    });
    assert_eq!(
        finished.load(Ordering::SeqCst),
        0,
        "readiness flipped before any in-flight request ended"
    );
    let statuses: Vec<u16> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    assert!(
        statuses.iter().all(|s| *s == 200),
        "{:?}",
        statuses.iter().filter(|s| **s != 200).collect::<Vec<_>>()
    );
    let status = host.wait(Duration::from_secs(20));
    assert_eq!(status.code(), Some(0));
    let lines = host.json_lines();
    assert_eq!(
        lines.iter().filter(|l| l["path"] == "/chaos/sleep").count(),
        200,
        "every request logged before exit"
    );
    assert_eq!(lines.last().unwrap()["message"], "stopped");
}

#[test]
fn sigint_also_stops_cleanly() {
    let app = AppDir::registry();
    let mut host = start(&app, &[]);
    assert_eq!(get(&host.url("/")).status, 200);
    host.signal("INT");
    assert_eq!(host.wait(Duration::from_secs(10)).code(), Some(0));
}

#[test]
fn past_the_grace_period_requests_are_cut_off_logged_as_503_and_no_new_ones_taken() {
    let app = AppDir::new(&registry_and_chaos_manifest());
    let mut host = start(&app, &["--shutdown-grace", "1s"]);
    let url = host.url("/chaos/sleep?ms=30000");
    let sleeper = std::thread::spawn(move || {
        let reply = agent().get(&url).call();
        reply
            .map(|r| r.status().as_u16())
            .map_err(|e| e.to_string())
    });
    wait_until("the sleeper to get in", Duration::from_secs(10), || {
        host.metric_sum("http_server_active_requests", "") >= 1.0
    });
    host.signal("TERM");
    // Once it says so, the listener is closed (not merely told to close).
    host.wait_for_line("draining", |l| {
        l["message"] == "stopped accepting connections; draining"
    });
    assert!(
        TcpStream::connect(host.addr).is_err(),
        "no new connections while draining"
    );
    assert_eq!(host.wait(Duration::from_secs(20)).code(), Some(0));
    assert!(
        sleeper.join().unwrap().is_err(),
        "the cut-off client gets no response"
    );

    let lines = host.json_lines();
    let cut: Vec<&Value> = lines
        .iter()
        .filter(|l| l["path"] == "/chaos/sleep")
        .collect();
    assert_eq!(cut.len(), 1, "{lines:?}");
    assert_eq!(
        (&cut[0]["status"], &cut[0]["level"]),
        (&json!(503), &json!("error")),
        "{}",
        cut[0]
    );
    assert!(
        cut[0]["error"]
            .as_str()
            .unwrap()
            .contains("cut off at shutdown"),
        "{}",
        cut[0]
    );
    assert!(lines.iter().any(|l| l["level"] == "warn"
        && l["message"]
            == "shutdown grace period elapsed; cutting off the requests still in flight"));
    assert_eq!(
        lines.last().unwrap()["message"],
        "stopped",
        "the cut request is logged before the host says it stopped"
    );
}
