//! The host itself: start-up validation, routing, the `spin-*` headers,
//! guest capabilities, the compiled cache, and durability of writes.

use std::collections::HashSet;
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{
    AppDir, Host, agent, get, is_invocation, run_to_exit, send, start, start_with_env,
    start_wrapped, try_start,
};

/// Holds a port, so a host that tried to bind it would fail with exit 1.
fn held_port() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    (listener, addr)
}

/// Runs `up` expecting exit 64; the listen port is held, so exit 64 (not 1)
/// also proves nothing was bound first. Returns stderr.
fn expect_config_error(app: &AppDir, extra: &[&str]) -> String {
    let (_held, addr) = held_port();
    let mut args = vec!["--listen", &addr];
    args.extend_from_slice(extra);
    let (status, stdout, stderr) = run_to_exit(app, &args);
    assert_eq!(
        status.code(),
        Some(64),
        "stderr: {stderr}\nstdout: {stdout}"
    );
    let last = stdout.lines().last().expect("an error log line");
    let line: serde_json::Value = serde_json::from_str(last).expect("the error is a JSON log line");
    assert_eq!(line["level"], "error");
    stderr
}

#[test]
fn rejects_a_missing_manifest_with_exit_64() {
    let app = AppDir::new("");
    std::fs::remove_file(app.path("spin.toml")).unwrap();
    let stderr = expect_config_error(&app, &[]);
    assert!(stderr.contains("cannot read the manifest"), "{stderr}");
}

#[test]
fn rejects_a_bad_manifest_with_exit_64() {
    let app = AppDir::new(
        "spin_manifest_version = 2\n[application]\nname = \"x\"\n[[trigger.http]]\nroute = \"/\"\ncomponent = \"nope\"\n",
    );
    let stderr = expect_config_error(&app, &[]);
    assert!(
        stderr.contains("component `nope` is not defined"),
        "{stderr}"
    );

    let app = AppDir::new("spin_manifest_version = 2\n[application\n");
    let stderr = expect_config_error(&app, &[]);
    assert!(
        stderr.contains("invalid manifest") && stderr.contains("line 2"),
        "{stderr}"
    );
}

#[test]
fn rejects_a_missing_wasm_file_with_exit_64() {
    let app = AppDir::new(
        &crate::support::registry_manifest().replace("{registry}", "/nonexistent/app.wasm"),
    );
    let stderr = expect_config_error(&app, &[]);
    assert!(
        stderr.contains("/nonexistent/app.wasm does not exist"),
        "{stderr}"
    );
    assert!(
        stderr.contains("hero-host build"),
        "the message says what to do: {stderr}"
    );
}

#[test]
fn rejects_an_unknown_store_label_with_exit_64() {
    let app = AppDir::new(
        &crate::support::registry_manifest().replace(r#"["default"]"#, r#"["default", "cache"]"#),
    );
    let stderr = expect_config_error(&app, &[]);
    assert!(
        stderr.contains("key-value store `cache`, which is not defined"),
        "{stderr}"
    );
}

#[test]
fn rejects_bad_runtime_config_with_exit_64() {
    let app = AppDir::registry();
    let config = app.write(
        "runtime-config.toml",
        "[key_value_store.default]\ntype = \"mongodb\"\n",
    );
    let stderr = expect_config_error(&app, &["--runtime-config-file", config.to_str().unwrap()]);
    assert!(stderr.contains("mongodb"), "{stderr}");
}

#[test]
fn rejects_a_file_that_is_not_a_component_with_exit_64() {
    let app = AppDir::registry();
    let bogus = app.write("bogus.wasm", "not wasm at all");
    let app = AppDir::new(
        &crate::support::registry_manifest().replace("{registry}", bogus.to_str().unwrap()),
    );
    let stderr = expect_config_error(&app, &[]);
    assert!(
        stderr.contains("is not a valid WebAssembly component"),
        "{stderr}"
    );
}

#[test]
fn reports_an_address_in_use_with_exit_1() {
    let app = AppDir::registry();
    let (_held, addr) = held_port();
    let (status, _, stderr) = run_to_exit(&app, &["--listen", &addr]);
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot listen on {addr}")),
        "{stderr}"
    );
}

const MIXED_MANIFEST: &str = r#"
spin_manifest_version = 2
[application]
name = "mixed"
[[trigger.http]]
route = "/..."
component = "hello-p3"
[[trigger.http]]
route = "/p2/..."
component = "hello-p2"
[[trigger.http]]
route = "/api/:name"
component = "chaos"
[[trigger.http]]
route = "/api/exact"
component = "hello-p2"
[[trigger.http]]
route = "/api/deep/..."
component = "chaos"
[[trigger.http]]
route = "/users/:user_id/..."
component = "chaos"
[[trigger.http]]
route = { private = true }
component = "chaos"
[component.hello-p3]
source = "{hello_p3}"
[component.hello-p2]
source = "{hello_p2}"
[component.chaos]
source = "{chaos}"
environment = { GREETING = "hi" }
key_value_stores = ["default"]
"#;

#[test]
fn serves_a_wasip2_component_beside_wasip3_ones() {
    let app = AppDir::new(MIXED_MANIFEST);
    let host = start(&app, &[]);
    let p2 = get(&host.url("/p2/anything"));
    assert_eq!((p2.status, p2.body.as_str()), (200, "hello from wasip2\n"));
    let p3 = get(&host.url("/"));
    assert_eq!((p3.status, p3.body.as_str()), (200, "Hello, world!\n"));
    let ready = host.wait_for_lines("component ready lines", |lines| {
        lines
            .iter()
            .filter(|l| l["message"] == "component ready")
            .count()
            == 3
    });
    let kinds: HashSet<(String, String)> = ready
        .iter()
        .filter(|l| l["message"] == "component ready")
        .map(|l| {
            (
                l["component"].as_str().unwrap().to_owned(),
                l["wasi"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(
        kinds.contains(&("hello-p2".into(), "p2".into())),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&("hello-p3".into(), "p3".into())),
        "{kinds:?}"
    );
}

#[test]
fn routes_by_spin_precedence() {
    let app = AppDir::new(MIXED_MANIFEST);
    let host = start(&app, &[]);
    let served_by = |path: &str| {
        let reply = get(&host.url(path));
        assert_eq!(reply.status, 200, "{path}: {}", reply.body);
        let lines = host.wait_for_lines("the invocation line", |lines| {
            lines.iter().any(|l| is_invocation(l) && l["path"] == path)
        });
        let line = lines
            .iter()
            .rev()
            .find(|l| l["path"] == path)
            .unwrap()
            .clone();
        (
            line["component"].as_str().unwrap().to_owned(),
            line["route"].as_str().unwrap().to_owned(),
        )
    };
    assert_eq!(
        served_by("/api/exact"),
        ("hello-p2".into(), "/api/exact".into()),
        "exact beats a parameter"
    );
    assert_eq!(
        served_by("/api/hello"),
        ("chaos".into(), "/api/:name".into()),
        "a parameter beats a wildcard"
    );
    assert_eq!(
        served_by("/api/deep/x/y"),
        ("chaos".into(), "/api/deep/...".into()),
        "the longer prefix wins"
    );
    assert_eq!(
        served_by("/api/x/y"),
        ("hello-p3".into(), "/...".into()),
        "the catch-all takes the rest"
    );
}

#[test]
fn gives_the_guest_spins_headers() {
    let app = AppDir::new(MIXED_MANIFEST);
    let host = start(&app, &[]);
    let reply = send(&agent(), "GET", &host.url("/api/deep/a/headers?q=1"), None);
    assert_eq!(reply.status, 200);
    let headers: Vec<&str> = reply.body.lines().collect();
    let has = |expected: &str| {
        assert!(
            headers.contains(&expected),
            "missing {expected:?} in {headers:#?}"
        )
    };
    has(&format!(
        "spin-full-url: http://{}/api/deep/a/headers?q=1",
        host.addr
    ));
    // As Spin: the matched route keeps the wildcard, the component route is
    // its prefix.
    has("spin-path-info: /a/headers");
    has("spin-matched-route: /api/deep/...");
    has("spin-component-route: /api/deep");
    has("spin-raw-component-route: /api/deep/...");
    has("spin-base-path: /");
    assert!(
        headers
            .iter()
            .any(|h| h.starts_with("spin-client-addr: 127.0.0.1:")),
        "{headers:#?}"
    );
    assert!(
        headers.iter().any(|h| h.starts_with("traceparent: 00-")),
        "{headers:#?}"
    );

    let reply = get(&host.url("/api/headers"));
    assert!(
        reply
            .body
            .lines()
            .any(|h| h == "spin-path-match-name: headers"),
        "{}",
        reply.body
    );

    // A parameter's `_` becomes `-` in its header's name, as in Spin.
    let reply = get(&host.url("/users/42/headers"));
    let headers: Vec<&str> = reply.body.lines().collect();
    for expected in [
        "spin-path-match-user-id: 42",
        "spin-matched-route: /users/:user_id/...",
        "spin-component-route: /users/:user_id",
        "spin-path-info: /headers",
    ] {
        assert!(
            headers.contains(&expected),
            "missing {expected:?} in {headers:#?}"
        );
    }
}

#[test]
fn answers_spins_health_path() {
    let app = AppDir::registry();
    let host = start(&app, &[]);
    let reply = get(&host.url("/.well-known/spin/health"));
    assert_eq!((reply.status, reply.body.as_str()), (200, "OK"));
}

#[test]
fn grants_the_guest_only_its_own_environment_and_no_files() {
    let app = AppDir::new(MIXED_MANIFEST);
    let host = start(&app, &[]);
    let env = get(&host.url("/api/deep/env"));
    // Not PATH, HOME or anything else the host process has.
    assert_eq!(
        env.body, "GREETING=hi\n",
        "only the component's environment"
    );
    let fs = get(&host.url("/api/deep/fs"));
    assert_eq!(fs.status, 403, "{}", fs.body);
    assert!(fs.body.starts_with("no filesystem"), "{}", fs.body);
}

#[test]
fn opens_only_granted_key_value_stores() {
    let app = AppDir::new(MIXED_MANIFEST);
    let host = start(&app, &[]);
    let granted = get(&host.url("/api/deep/kv?label=default"));
    assert_eq!(granted.status, 200, "{}", granted.body);
    assert!(
        granted.body.contains(r#"keys: Ok(["chaos"])"#),
        "{}",
        granted.body
    );
    let unknown = get(&host.url("/api/deep/kv?label=other"));
    assert_eq!(
        (unknown.status, unknown.body.as_str()),
        (403, "open: Error::NoSuchStore")
    );
}

/// A one-shot HTTP server answering 200 `upstream`, counting requests.
fn upstream() -> (String, Arc<AtomicBool>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let hit = Arc::new(AtomicBool::new(false));
    let seen = hit.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { break };
            seen.store(true, Ordering::SeqCst);
            let mut buf = [0u8; 4096];
            let _ = std::io::Read::read(&mut stream, &mut buf);
            let _ = std::io::Write::write_all(
                &mut stream,
                b"HTTP/1.1 200 OK\r\ncontent-length: 8\r\nconnection: close\r\n\r\nupstream",
            );
        }
    });
    (addr, hit)
}

#[test]
fn allows_outbound_http_only_to_allowed_hosts() {
    let (allowed_addr, allowed_hit) = upstream();
    let (denied_addr, denied_hit) = upstream();
    let manifest = MIXED_MANIFEST.replace(
        "environment = { GREETING = \"hi\" }",
        &format!("environment = {{ GREETING = \"hi\" }}\nallowed_outbound_hosts = [\"http://{allowed_addr}\"]"),
    );
    let app = AppDir::new(&manifest);
    let host = start(&app, &[]);
    let allowed = get(&host.url(&format!("/api/deep/fetch?url=http://{allowed_addr}/")));
    assert_eq!(
        (allowed.status, allowed.body.as_str()),
        (200, "upstream 200")
    );
    assert!(allowed_hit.load(Ordering::SeqCst));
    let denied = get(&host.url(&format!("/api/deep/fetch?url=http://{denied_addr}/")));
    assert_eq!(denied.status, 502, "{}", denied.body);
    assert!(denied.body.contains("HttpRequestDenied"), "{}", denied.body);
    assert!(
        !denied_hit.load(Ordering::SeqCst),
        "a denied request never leaves the host"
    );
    host.wait_for_lines("the denial log line", |lines| {
        lines.iter().any(|l| {
            l["message"] == "outbound request denied: not in allowed_outbound_hosts"
                && l["component"] == "chaos"
        })
    });
}

#[test]
fn caches_compiled_components_across_starts() {
    let app = AppDir::registry();
    let compiled = |host: &crate::support::Host| {
        let lines = host.wait_for_lines("component ready", |l| {
            l.iter().any(|l| l["message"] == "component ready")
        });
        lines
            .iter()
            .find(|l| l["message"] == "component ready")
            .unwrap()["compiled"]
            .clone()
    };
    let first = start(&app, &[]);
    assert_eq!(compiled(&first), json!("now"));
    drop(first);
    let second = start(&app, &[]);
    assert_eq!(compiled(&second), json!("cache"));
    assert_eq!(get(&second.url("/")).status, 200);
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    let _heavy = crate::support::exclusive();
    let app = AppDir::registry();
    let mut host = start(&app, &[]);
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|writer| {
            let url = host.url("/heroes");
            let acknowledged = acknowledged.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let agent = agent();
                let mut n = 0;
                while !stop.load(Ordering::SeqCst) {
                    n += 1;
                    let body = json!({"name": format!("w{writer}-{n}"), "power": "persistence"})
                        .to_string();
                    let request = http::Request::post(&url).body(body).unwrap();
                    // A request cut off by the kill is not acknowledged.
                    let Ok(response) = agent.run(request) else {
                        break;
                    };
                    // Before the kill every write must succeed.
                    assert_eq!(response.status(), 201, "a write failed before the kill");
                    // Acknowledged means the whole response arrived.
                    let Ok(body) = response.into_body().read_to_string() else {
                        break;
                    };
                    let hero: serde_json::Value = serde_json::from_str(&body).unwrap();
                    acknowledged
                        .lock()
                        .unwrap()
                        .push(hero["id"].as_str().unwrap().to_owned());
                }
            })
        })
        .collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while acknowledged.lock().unwrap().len() < 200 {
        assert!(
            std::time::Instant::now() < deadline,
            "200 writes were not acknowledged within 60 s"
        );
        assert!(
            writers.iter().all(|w| !w.is_finished()),
            "a writer stopped before the kill"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    host.signal("KILL");
    stop.store(true, Ordering::SeqCst);
    host.wait(Duration::from_secs(10));
    for writer in writers {
        writer.join().unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    let host = try_start(&app, &[]).expect("restart after kill -9");
    let agent = agent();
    let missing: Vec<_> = acknowledged
        .iter()
        .filter(|id| send(&agent, "GET", &host.url(&format!("/heroes/{id}")), None).status != 200)
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged heroes lost: {missing:?}",
        missing.len(),
        acknowledged.len()
    );
}

#[test]
fn seeds_the_default_store_with_key_value_flags() {
    let app = AppDir::new(MIXED_MANIFEST);
    let host = start(
        &app,
        &[
            "--key-value",
            "greeting=hello=there",
            "--key-value",
            "empty=",
        ],
    );
    let seeded = get(&host.url("/api/deep/kvop?label=default&op=get&key=greeting"));
    assert_eq!((seeded.status, seeded.body.as_str()), (200, "hello=there"));
    let empty = get(&host.url("/api/deep/kvop?label=default&op=get&key=empty"));
    assert_eq!((empty.status, empty.body.as_str()), (200, ""));
}

/// `instance_reused` of the invocation lines of `count` sequential `GET /`.
fn reuse_of_sequential_requests(host: &Host, count: usize) -> Vec<Value> {
    for _ in 0..count {
        assert_eq!(get(&host.url("/")).status, 200);
    }
    host.wait_for_invocations(count)
        .iter()
        .map(|l| l["instance_reused"].clone())
        .collect()
}

#[test]
fn instances_are_reused_by_default_and_fresh_at_a_reuse_count_of_one() {
    let app = AppDir::registry();
    let reusing = start(&app, &[]);
    // A request that arrives before the previous one has handed its instance
    // back (the response is out, the bookkeeping not yet done) gets a fresh
    // instance, so not every later request is a reuse; some must be. For the
    // same reason a line may be written just after the next request's: the
    // check does not rely on their order.
    let reused = reuse_of_sequential_requests(&reusing, 6);
    assert!(
        reused.contains(&json!(false)),
        "the first request instantiates: {reused:?}"
    );
    assert!(reused.contains(&json!(true)), "{reused:?}");
    let fresh = start(&app, &["--max-instance-reuse-count", "1"]);
    assert_eq!(
        reuse_of_sequential_requests(&fresh, 4),
        vec![json!(false); 4]
    );
}

#[test]
fn environment_variables_configure_the_host() {
    let app = AppDir::registry();
    let host = start_with_env(
        &app,
        &[],
        &[
            ("HERO_HOST_MAX_INSTANCE_REUSE_COUNT", "1"),
            ("HERO_HOST_SERVICE_NAME", "registry-from-env"),
            ("HERO_HOST_SERVICE_INSTANCE_ID", "pod-7"),
        ],
    );
    assert_eq!(
        reuse_of_sequential_requests(&host, 6),
        vec![json!(false); 6]
    );
    let target_info = host
        .metrics_text()
        .lines()
        .find(|l| l.starts_with("target_info{"))
        .map(str::to_owned)
        .expect("target_info");
    for label in [
        r#"service_name="registry-from-env""#,
        r#"service_instance_id="pod-7""#,
        &format!(r#"service_version="{}""#, env!("CARGO_PKG_VERSION")),
    ] {
        assert!(target_info.contains(label), "{label} in {target_info}");
    }
}

#[test]
fn the_admin_endpoints_are_not_on_the_public_port() {
    let app = AppDir::registry();
    let host = start(&app, &[]);
    for path in ["/metrics", "/healthz", "/readyz"] {
        let public = get(&host.url(path));
        assert_eq!(
            (public.status, public.json()),
            (404, json!({"detail": "Not Found"})),
            "{path} on the public port"
        );
        assert_eq!(
            get(&host.admin_url(path)).status,
            200,
            "{path} on the admin port"
        );
    }
}

#[test]
fn build_runs_each_components_build_command_and_reports_failures() {
    let app = AppDir::new(
        "spin_manifest_version = 2\n[application]\nname = \"b\"\n[[trigger.http]]\nroute = \"/\"\ncomponent = \"one\"\n\
         [component.one]\nsource = \"one.wasm\"\n[component.one.build]\ncommand = [\"echo first > built.txt\", \"echo second >> built.txt\"]\n",
    );
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_hero-host"))
        .args(["build", "-f"])
        .arg(app.path("spin.toml"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(app.path("built.txt")).unwrap(),
        "first\nsecond\n"
    );

    let failing = AppDir::new(
        "spin_manifest_version = 2\n[application]\nname = \"b\"\n[[trigger.http]]\nroute = \"/\"\ncomponent = \"one\"\n\
         [component.one]\nsource = \"one.wasm\"\n[component.one.build]\ncommand = \"exit 3\"\n",
    );
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_hero-host"))
        .args(["build", "-f"])
        .arg(failing.path("spin.toml"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("the build command of component `one` failed"),
        "{stderr}"
    );
    // `up --build` stops on the same failure, before serving.
    let (status, _, stderr) = run_to_exit(&failing, &["--build"]);
    assert_eq!(status.code(), Some(1), "{stderr}");
}

#[test]
fn a_low_open_files_limit_is_raised_to_the_hard_limit() {
    let app = AppDir::registry();
    let host = start_wrapped(&app, &[], &["prlimit", "--nofile=256:4096", "--"]);
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", host.pid())).unwrap();
    let open_files = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap()
        .split_whitespace()
        .skip(3)
        .take(2)
        .collect::<Vec<_>>();
    assert_eq!(open_files, ["4096", "4096"], "{limits}");
    let line = host.wait_for_line("the limit line", |l| l["message"] == "open files limit");
    assert_eq!(
        (&line["open_files_limit"], &line["started_with"]),
        (&json!("4096"), &json!("256"))
    );
    // 4096 is below the 10,000-connection cap: worth a warning.
    let warning = host.wait_for_line("the warning", |l| {
        l["message"]
            .as_str()
            .is_some_and(|m| m.contains("below the connection cap"))
    });
    assert_eq!(warning["level"], "warn");
    assert_eq!(get(&host.url("/")).status, 200);
}
