//! What `spin up` serves besides the app, served the same way by hero-host
//! over real HTTP: Spin's own `/.well-known/spin/` paths, HTTP/2 over
//! cleartext with prior knowledge, and a component calling its own app
//! through the `self` host.

use serde_json::Value;

use std::process::Command;

use crate::support::{AppDir, agent, get, send, start, tool};

/// The invocation line of `path`, waiting for it.
fn line_of(host: &crate::support::Host, path: &str) -> Value {
    host.wait_for_line(&format!("the invocation line of {path}"), |line| {
        crate::support::is_invocation(line) && line["path"] == path
    })
}

#[test]
fn answers_spins_info_path_with_the_manifests_name_and_version() {
    let app = AppDir::registry();
    let host = start(&app, &[]);
    let agent = agent();
    for method in ["GET", "POST"] {
        let reply = send(&agent, method, &host.url("/.well-known/spin/info"), None);
        assert_eq!(reply.status, 200, "{method}: {}", reply.body);
        assert_eq!(reply.header("content-type"), Some("application/json"));
        // Spin's bytes: pretty JSON, name and version from `spin.toml`.
        assert_eq!(
            reply.body, "{\n  \"name\": \"hero-registry\",\n  \"version\": \"0.1.0\"\n}",
            "{method}"
        );
    }
    let line = line_of(&host, "/.well-known/spin/info");
    assert_eq!(line["status"], 200, "{line}");
    let other = send(&agent, "GET", &host.url("/.well-known/spin/nope"), None);
    assert_eq!(other.status, 404, "Spin keeps the prefix: {}", other.body);
    // One line each, and each counted: two 200s and the 404.
    line_of(&host, "/.well-known/spin/nope");
    assert_eq!(host.invocations().len(), 3);
    let count = |status: &str| {
        host.metric_sum(
            "http_server_request_duration_seconds_count",
            &format!("http_response_status_code=\"{status}\""),
        )
    };
    assert_eq!((count("200"), count("404")), (2.0, 1.0));
}

/// `curl --http2-prior-knowledge`: each transfer's HTTP version, status and
/// body, in order.
fn curl_h2(args: &[&str]) -> Vec<(String, u16, String)> {
    let output = Command::new(tool("curl", "curl"))
        .args(["-sS", "--http2-prior-knowledge", "--max-time", "20"])
        .args(["-w", "\n@@ %{http_version} %{http_code}\n"])
        .args(args)
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "curl failed ({}): {}{text}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let mut transfers = Vec::new();
    let mut body = String::new();
    for line in text.lines() {
        match line.strip_prefix("@@ ") {
            Some(meta) => {
                let (version, status) = meta.split_once(' ').unwrap();
                let body = std::mem::take(&mut body);
                transfers.push((version.to_owned(), status.parse().unwrap(), body));
            }
            None => body.push_str(line),
        }
    }
    transfers
}

#[test]
fn serves_http2_with_prior_knowledge_one_line_per_stream_and_http1_unchanged() {
    let app = AppDir::registry();
    let host = start(&app, &[]);
    // A hero made over HTTP/2, then three more requests.
    let made = curl_h2(&[
        "-X",
        "POST",
        "-H",
        "content-type: application/json",
        "-d",
        r#"{"name":"Deadpond","power":"regeneration","team":"X"}"#,
        &host.url("/heroes"),
    ]);
    assert_eq!((made[0].0.as_str(), made[0].1), ("2", 201), "{made:?}");
    let hero: Value = serde_json::from_str(&made[0].2).unwrap();
    let id = hero["id"].as_str().unwrap();
    let path = format!("/heroes/{id}");
    // One connection each: curl 7.88 (Debian 12) fails to reuse an HTTP/2
    // prior-knowledge connection for a second transfer (exit 16) before
    // sending anything on it.
    let streams: Vec<_> = [path.as_str(), "/heroes?team=X", "/nowhere"]
        .iter()
        .flat_map(|p| curl_h2(&[&host.url(p)]))
        .collect();
    let statuses: Vec<(&str, u16)> = streams.iter().map(|(v, s, _)| (v.as_str(), *s)).collect();
    assert_eq!(
        statuses,
        [("2", 200), ("2", 200), ("2", 404)],
        "{streams:?}"
    );
    let read: Value = serde_json::from_str(&streams[0].2).unwrap();
    assert_eq!(read, hero, "the same hero over HTTP/2");
    assert!(streams[1].2.contains(id), "{}", streams[1].2);

    // One invocation line per stream, with the route that served it.
    let lines = host.wait_for_invocations(4);
    assert_eq!(lines.len(), 4, "{lines:#?}");
    let line = line_of(&host, &path);
    assert_eq!(
        (line["status"].as_u64(), line["route"].as_str()),
        (Some(200), Some("/heroes/:id"))
    );

    // HTTP/1 on the same port, as before.
    let reply = get(&host.url(&path));
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json(), hero);
}

/// A component calls its own app (`http://self/...`; a WASIp3 guest cannot
/// send a URL without a host), allowed by `http://self` in
/// `allowed_outbound_hosts` as in Spin: the call is served by
/// the app (here, the registry's list), and logged as its own request in the
/// caller's trace. Without `http://self`, the call is denied before it
/// leaves the host.
#[test]
fn a_component_calls_its_own_app_through_self_in_the_callers_trace() {
    let manifest = crate::support::registry_and_chaos_manifest()
        + "allowed_outbound_hosts = [\"http://self\"]\n";
    let app = AppDir::new(&manifest);
    let host = start(&app, &[]);
    let reply = get(&host.url("/chaos/fetch?url=http://self/heroes"));
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (200, "upstream 200"),
        "the call reached the registry"
    );
    let outer = line_of(&host, "/chaos/fetch");
    let inner = line_of(&host, "/heroes");
    assert_eq!(inner["component"], "hero-registry", "{inner}");
    assert_eq!(inner["status"], 200, "{inner}");
    assert_eq!(
        inner["trace_id"], outer["trace_id"],
        "one trace: {inner} {outer}"
    );
    assert_ne!(inner["request_id"], outer["request_id"]);
    let missing = get(&host.url("/chaos/fetch?url=http://self/nowhere"));
    assert_eq!(missing.body, "upstream 404", "{}", missing.body);

    let app = AppDir::new(&crate::support::registry_and_chaos_manifest());
    let host = start(&app, &[]);
    let denied = get(&host.url("/chaos/fetch?url=http://self/heroes"));
    assert_eq!(denied.status, 502, "{}", denied.body);
    assert!(denied.body.contains("HttpRequestDenied"), "{}", denied.body);
    let warning = host.wait_for_line("the denial line", |line| {
        line["message"] == "outbound request denied: not in allowed_outbound_hosts"
    });
    assert!(
        warning["destination"]
            .as_str()
            .is_some_and(|d| d.contains("http://self")),
        "{warning}"
    );
    assert!(
        host.invocations().iter().all(|l| l["path"] != "/heroes"),
        "a denied call never reaches the app"
    );
}
