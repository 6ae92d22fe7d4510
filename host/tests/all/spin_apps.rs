//! Spin apps as people build them, under hero-host over real HTTP: one per
//! SDK generation (`guests/sdk5-app`, a spin-sdk 5 core module turned into a
//! component at load; `guests/sdk7-app`, a spin-sdk 7 WASIp3 component),
//! each using variables, SQLite, key-value and outbound HTTP to a local
//! server; a secret that must not leak; a required variable missing; an
//! import the host does not provide.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::support::{
    AppDir, agent, app_manifest, get, http_component, is_invocation, run_to_exit, send,
    start_with_env,
};

/// The secret the apps send upstream; it must appear in no log line, no
/// metric and no start-up message.
const SECRET: &str = "s3cr3t-t0ken-4f9a1c";

/// A guest built for `target` in release (the suite's guest build step).
fn guest(target: &str, name: &str) -> PathBuf {
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let path = dir
        .join(target)
        .join("release")
        .join(format!("{name}.wasm"));
    assert!(
        path.is_file(),
        "{} is missing: build the guests first (README's test command does it: \
         `cargo build --target {target} --release -p {}`)",
        path.display(),
        name.replace('_', "-")
    );
    path
}

/// The manifest both apps run under: variables with a default, a required
/// secret and a required host, component templates over them, a templated
/// `allowed_outbound_hosts`, the default key-value store and database.
fn manifest(wasm: &Path) -> String {
    let variables = r#"[variables]
greeting = { default = "hello" }
token = { required = true, secret = true }
upstream_host = { required = true }
"#;
    let app = http_component(
        "/...",
        "app",
        &wasm.display().to_string(),
        r#"key_value_stores = ["default"]
sqlite_databases = ["default"]
allowed_outbound_hosts = ["http://{{ upstream_host }}"]"#,
    );
    let templates = r#"[component.app.variables]
greeting = "{{ greeting }}, world"
upstream = "http://{{ upstream_host }}"
token = "{{ token }}"
"#;
    app_manifest("spin-app", &format!("{variables}{app}{templates}"))
}

/// A local upstream that answers `authorized` to requests bearing the
/// secret and 401 otherwise. Serves until the test process ends.
fn upstream() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut authorized = false;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                let lower = line.to_ascii_lowercase();
                authorized |= lower.starts_with("authorization:")
                    && line.trim_end().ends_with(&format!("Bearer {SECRET}"));
            }
            let (status, body) = if authorized {
                ("200 OK", "authorized")
            } else {
                ("401 Unauthorized", "denied")
            };
            let mut stream = stream;
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    addr
}

/// Runs one app through every interface it uses and checks what it
/// answers, what the host logged and measured, and where the data is.
fn exercises_every_interface(wasm: PathBuf, expected_variables: Value) {
    let app = AppDir::new(&manifest(&wasm));
    let upstream = upstream();
    let host = start_with_env(
        &app,
        &[
            "--sqlite",
            "CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT NOT NULL)",
            "--log-level",
            "debug",
        ],
        &[
            ("SPIN_VARIABLE_TOKEN", SECRET),
            ("SPIN_VARIABLE_UPSTREAM_HOST", upstream.as_str()),
        ],
    );
    let variables = get(&host.url("/variables"));
    assert_eq!(variables.status, 200, "{}", variables.body);
    assert_eq!(variables.json(), expected_variables);

    let secret = get(&host.url("/secret"));
    assert_eq!((secret.status, secret.body.as_str()), (200, "authorized"));

    let agent = agent();
    for (text, id) in [("first", "1"), ("second", "2")] {
        let added = send(&agent, "POST", &host.url("/notes"), Some(text));
        assert_eq!((added.status, added.body.as_str()), (201, id));
    }
    let notes = get(&host.url("/notes"));
    assert_eq!(
        notes.json(),
        serde_json::json!([{"id": 1, "text": "first"}, {"id": 2, "text": "second"}])
    );
    assert_eq!(get(&host.url("/count")).body, "1");
    assert_eq!(get(&host.url("/count")).body, "2");

    // A failing statement: the guest gets a generic error, the host's log
    // line has SQLite's detail.
    let bad = get(&host.url("/bad-sql"));
    assert_eq!(bad.status, 500);
    assert!(
        bad.body.contains("the host log has the detail"),
        "{}",
        bad.body
    );
    assert!(!bad.body.contains("no_such_table"), "{}", bad.body);
    let lines = host.wait_for_invocations(8);
    let bad_line = lines.iter().find(|l| l["path"] == "/bad-sql").unwrap();
    let error = bad_line["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("SQLite select on database `default` failed")
            && error.contains("no such table"),
        "{bad_line}"
    );

    let metrics = host.metrics_text();
    let count = |name: &str, labels: &[&str]| -> f64 {
        metrics
            .lines()
            .filter(|l| l.starts_with(name) && labels.iter().all(|label| l.contains(label)))
            .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
            .sum()
    };
    let sqlite = "sqlite_query_duration_seconds_count{";
    let database = "sqlite_database=\"default\"";
    assert!(
        count(
            sqlite,
            &[database, "sqlite_operation=\"insert\"", "outcome=\"ok\""]
        ) >= 2.0,
        "{metrics}"
    );
    assert!(
        count(
            sqlite,
            &[database, "sqlite_operation=\"select\"", "outcome=\"error\""]
        ) >= 1.0,
        "{metrics}"
    );
    assert!(
        count(
            "key_value_operation_duration_seconds_count{",
            &["key_value_operation=\"set\""]
        ) >= 2.0,
        "{metrics}"
    );

    // The secret reached the upstream, and nothing else.
    let all_lines = host.lines().join("\n");
    assert!(!all_lines.contains(SECRET), "a log line holds the secret");
    assert!(!metrics.contains(SECRET), "a metric holds the secret");
    let variable_line = host
        .json_lines()
        .into_iter()
        .find(|l| l["message"] == "variable" && l["variable"] == "token")
        .expect("a start-up line names the token variable");
    assert_eq!(variable_line["source"], "environment SPIN_VARIABLE_TOKEN");
    assert_eq!(variable_line["secret"], true);

    // Where Spin keeps the default database, as the app wrote it.
    let database = rusqlite::Connection::open(app.path("state/sqlite_db.db")).unwrap();
    let texts: Vec<String> = database
        .prepare("SELECT text FROM notes ORDER BY id")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(texts, ["first", "second"]);
    assert!(lines.iter().all(is_invocation));
}

#[test]
fn a_spin_sdk_5_core_module_app_uses_every_interface_it_imports() {
    exercises_every_interface(
        guest("wasm32-wasip1", "sdk5_app"),
        serde_json::json!({"greeting": "hello, world", "not_declared": "undefined"}),
    );
}

#[test]
fn a_spin_sdk_7_app_uses_every_interface_it_imports() {
    exercises_every_interface(
        guest("wasm32-wasip2", "sdk7_app"),
        serde_json::json!({
            "greeting": "hello, world",
            "config": "hello, world",
            "not_declared": "undefined"
        }),
    );
}

#[test]
fn up_stops_with_exit_64_naming_a_missing_required_variable() {
    let app = AppDir::new(&manifest(&guest("wasm32-wasip2", "sdk7_app")));
    let (status, stdout, stderr) = run_to_exit(&app, &[]);
    assert_eq!(status.code(), Some(64), "{stderr}\n{stdout}");
    assert!(
        stderr.contains("required variables `token`, `upstream_host` not set"),
        "{stderr}"
    );
    assert!(stderr.contains("SPIN_VARIABLE_TOKEN"), "{stderr}");
}

#[test]
fn a_component_importing_an_unprovided_spin_feature_is_refused_with_its_name() {
    // A component whose only import is Spin's Serverless AI interface, in
    // the component binary format: an instance type exporting `infer: func()`,
    // imported as `fermyon:spin/llm@2.0.0`.
    let name = b"fermyon:spin/llm@2.0.0";
    let mut component = b"\0asm\x0d\0\x01\0".to_vec();
    component.extend_from_slice(&[
        0x07, 0x12, 0x01, 0x42, 0x02, 0x01, 0x40, 0x00, 0x01, 0x00, 0x04, 0x00, 0x05,
    ]);
    component.extend_from_slice(b"infer");
    component.extend_from_slice(&[0x01, 0x00]);
    let import_len = u8::try_from(name.len() + 5).unwrap();
    component.extend_from_slice(&[0x0a, import_len, 0x01, 0x00, name.len() as u8]);
    component.extend_from_slice(name);
    component.extend_from_slice(&[0x05, 0x00]);
    let app = AppDir::new(&manifest(Path::new("{placeholder}")));
    let wasm = app.path("llm.wasm");
    std::fs::write(&wasm, component).unwrap();
    std::fs::write(app.path("spin.toml"), manifest(&wasm)).unwrap();
    let (status, stdout, stderr) = {
        let mut command = crate::support::command(&app, &[]);
        command
            .env("SPIN_VARIABLE_TOKEN", "x")
            .env("SPIN_VARIABLE_UPSTREAM_HOST", "127.0.0.1:1");
        let output = command.output().unwrap();
        (
            output.status,
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    assert_eq!(status.code(), Some(64), "{stderr}\n{stdout}");
    assert!(stderr.contains("component `app`"), "{stderr}");
    assert!(
        stderr.contains("imports `fermyon:spin/llm@2.0.0` (Serverless AI (`ai_models`))"),
        "{stderr}"
    );
}

/// A statement waiting on a lock another process holds waits on a blocking
/// thread, not on an async worker: while more inserts than the host has
/// worker threads wait for the lock, the host still answers other requests,
/// and the inserts complete once the lock is released.
#[test]
fn requests_are_answered_while_sqlite_statements_wait_on_a_held_lock() {
    let app = AppDir::new(&manifest(&guest("wasm32-wasip1", "sdk5_app")));
    let host = start_with_env(
        &app,
        &[
            "--sqlite",
            "CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT NOT NULL)",
        ],
        &[
            ("SPIN_VARIABLE_TOKEN", SECRET),
            ("SPIN_VARIABLE_UPSTREAM_HOST", "127.0.0.1:1"),
        ],
    );
    let holder = rusqlite::Connection::open(app.path("state/sqlite_db.db")).unwrap();
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();
    let waiting = 2 * std::thread::available_parallelism().map_or(2, |n| n.get());
    let inserts: Vec<_> = (0..waiting)
        .map(|i| {
            let url = host.url("/notes");
            std::thread::spawn(move || send(&agent(), "POST", &url, Some(&format!("note {i}"))))
        })
        .collect();
    crate::support::wait_until(
        "every insert to be in the host",
        std::time::Duration::from_secs(4),
        || host.metric_sum("http_server_active_requests", "") >= waiting as f64,
    );
    let variables = get(&host.url("/variables"));
    let still_waiting = inserts.iter().filter(|t| !t.is_finished()).count();
    holder.execute_batch("COMMIT").unwrap();
    assert_eq!(variables.status, 200, "{}", variables.body);
    assert_eq!(
        still_waiting, waiting,
        "an insert ended while the lock was held"
    );
    for insert in inserts {
        let reply = insert.join().unwrap();
        assert_eq!(reply.status, 201, "{}", reply.body);
    }
}

/// `-e KEY=VALUE` reaches every component, as `spin up -e` does, winning
/// over the component's own `environment`, whose other entries stay.
#[test]
fn env_flags_reach_the_guest_and_win_over_its_environment() {
    let manifest = app_manifest(
        "env",
        &http_component(
            "/...",
            "chaos",
            "{chaos}",
            r#"environment = { GREETING = "hi", KEEP = "kept" }"#,
        ),
    );
    let app = AppDir::new(&manifest);
    let host = crate::support::start(&app, &["-e", "GREETING=override", "--env", "EXTRA=a=b"]);
    let env = get(&host.url("/env"));
    assert_eq!(env.status, 200, "{}", env.body);
    let mut lines: Vec<&str> = env.body.lines().collect();
    lines.sort_unstable();
    assert_eq!(lines, ["EXTRA=a=b", "GREETING=override", "KEEP=kept"]);
}
