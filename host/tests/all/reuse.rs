//! Concurrent instance reuse: one instance serves several requests at once,
//! and every guest line still names the request whose task wrote it.

use std::collections::HashMap;
use std::sync::{Arc, Barrier};
use std::time::Duration;

use serde_json::Value;

use crate::support::{
    AppDir, agent, exclusive, get, is_invocation, registry_and_chaos_manifest, send, start,
    wait_until,
};

/// Clients at once.
const CLIENTS: usize = 32;
/// Requests per client.
const REQUESTS: usize = 32;
/// Marker rounds per request: each prints one stdout line and one stderr
/// line written in two parts (WASIp2), and one line into a WASIp3 stdout
/// stream.
const ROUNDS: usize = 5;
/// Marker lines per round: stdout, stderr and the WASIp3 stream.
const LINES_PER_ROUND: usize = 3;

/// 32 clients, each request printing marker lines to stdout and stderr (the
/// stderr ones in two parts) and into a WASIp3 stdout stream, with waits
/// between every write, so requests on one instance interleave their output
/// mid-line. Over 15,360 lines, each must name the request that printed it,
/// whole.
#[test]
fn every_guest_line_names_the_request_whose_task_wrote_it() {
    let _heavy = exclusive();
    let app = AppDir::new(&registry_and_chaos_manifest());
    let host = start(
        &app,
        &[
            "--max-instance-concurrent-reuse-count",
            "16",
            "--max-instance-reuse-count",
            "128",
        ],
    );
    let start_line = Arc::new(Barrier::new(CLIENTS));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|client| {
            let url = host.url("/chaos");
            let start_line = start_line.clone();
            std::thread::spawn(move || {
                let agent = agent();
                start_line.wait();
                for request in 0..REQUESTS {
                    let path = format!("{url}/c{client}r{request}/markers?lines={ROUNDS}&ms=1");
                    let reply = send(&agent, "GET", &path, None);
                    assert_eq!(reply.status, 200, "{path}: {}", reply.body);
                }
            })
        })
        .collect();
    for client in clients {
        client.join().unwrap();
    }
    let total = CLIENTS * REQUESTS;
    let markers_expected = total * ROUNDS * LINES_PER_ROUND;
    let lines = host.wait_for_lines("every invocation and marker line", |lines| {
        lines.iter().filter(|l| is_invocation(l)).count() >= total
            && lines.iter().filter(|l| is_marker(l)).count() >= markers_expected
    });

    // The request id of each tag, from the invocation lines.
    let request_of: HashMap<String, String> = lines
        .iter()
        .filter(|l| is_invocation(l))
        .filter_map(|l| {
            let tag = l["path"]
                .as_str()?
                .strip_prefix("/chaos/")?
                .strip_suffix("/markers")?;
            Some((tag.to_owned(), l["request_id"].as_str()?.to_owned()))
        })
        .collect();
    assert_eq!(request_of.len(), total);

    let (mut wrong, mut null, mut mangled) = (0, 0, 0);
    let mut per_request: HashMap<&str, usize> = HashMap::new();
    for line in lines.iter().filter(|l| is_marker(l)) {
        let message = line["message"].as_str().unwrap();
        // `marker <tag> <i> out` and `marker <tag> <i> stream` on stdout,
        // `marker <tag> <i> err` on stderr.
        let words: Vec<&str> = message.split(' ').collect();
        let expected_ends: &[&str] = if line["stream"] == "stdout" {
            &["out", "stream"]
        } else {
            &["err"]
        };
        if words.len() != 4 || !expected_ends.contains(&words[3]) {
            mangled += 1;
            continue;
        }
        match line["request_id"].as_str() {
            None => null += 1,
            Some(id) if request_of.get(words[1]).map(String::as_str) != Some(id) => wrong += 1,
            Some(id) => *per_request.entry(id).or_default() += 1,
        }
    }
    assert_eq!(
        (wrong, null, mangled),
        (0, 0, 0),
        "lines attributed to the wrong request, to none, or mixed with another's"
    );
    assert!(
        per_request.len() == total && per_request.values().all(|n| *n == ROUNDS * LINES_PER_ROUND),
        "each request has all its {} lines",
        ROUNDS * LINES_PER_ROUND
    );

    let instances = host.metric_sum(
        "wasm_instantiation_duration_seconds_count",
        r#"spin_component="chaos""#,
    );
    assert!(
        instances >= 1.0 && instances <= (total / 8) as f64,
        "{instances} instances for {total} requests: concurrent reuse is not happening"
    );
}

/// A task the guest leaves running after its response names no request, and
/// says why.
#[test]
fn output_after_the_response_names_no_request_and_says_why() {
    let app = AppDir::new(&registry_and_chaos_manifest());
    let host = start(&app, &[]);
    let reply = get(&host.url("/chaos/linger?ms=100"));
    assert_eq!(reply.status, 200);
    let line = host.wait_for_line("the lingering line", |l| {
        l["source"] == "guest" && l["message"] == "lingering"
    });
    assert_eq!(line["request_id"], Value::Null, "{line}");
    assert_eq!(line["trace_id"], Value::Null, "{line}");
    assert_eq!(line["outside_request"], "after_response", "{line}");
}

/// A trap on a shared instance fails every request on it, each with one line
/// naming the cause, and the next request gets a fresh instance.
#[test]
fn a_trap_on_a_shared_instance_fails_each_request_once_then_a_fresh_one_serves() {
    let _heavy = exclusive();
    let app = AppDir::new(&registry_and_chaos_manifest());
    let host = start(&app, &[]);
    // Sleepers share the instance with the request that traps: each is sent
    // once the one before is running, so the one instance takes them all.
    let sleepers: Vec<_> = (1..=3)
        .map(|running| {
            let url = host.url("/chaos/sleep?ms=5000");
            let sleeper = std::thread::spawn(move || send(&agent(), "GET", &url, None).status);
            wait_until("the sleeper to start", Duration::from_secs(10), || {
                host.metric_sum("http_server_active_requests", "") >= f64::from(running)
            });
            std::thread::sleep(Duration::from_millis(50));
            sleeper
        })
        .collect();
    let trapped = send(&agent(), "GET", &host.url("/chaos/trap"), None);
    assert_eq!(trapped.status, 500);
    let statuses: Vec<u16> = sleepers.into_iter().map(|s| s.join().unwrap()).collect();
    assert_eq!(
        statuses,
        [500, 500, 500],
        "the requests sharing the instance fail"
    );
    let lines = host.wait_for_invocations(4);
    let chaos: Vec<&Value> = lines.iter().filter(|l| l["component"] == "chaos").collect();
    assert_eq!(chaos.len(), 4, "one line per request: {chaos:#?}");
    for line in &chaos {
        assert_eq!(
            (&line["status"], &line["level"]),
            (&500.into(), &"error".into()),
            "{line}"
        );
        let error = line["error"].as_str().unwrap_or("");
        assert!(error.contains("guest trapped (unreachable)"), "{line}");
    }
    assert_eq!(
        host.metric_sum(
            "http_server_request_duration_seconds_count",
            r#"error_type="trap""#
        ),
        4.0
    );

    let next = get(&host.url("/chaos/hello"));
    assert_eq!(next.status, 200);
    let line = host.wait_for_line("the next request's line", |l| {
        is_invocation(l) && l["path"] == "/chaos/hello"
    });
    assert_eq!(line["instance_reused"], false, "{line}");
}

/// An instance serving as many requests as it may at once takes the next
/// one as soon as one of its own ends, not only once all have. Two at once:
/// a short sleeper and a long one fill the first instance, two long ones a
/// second; once the short one has answered, the next request goes to the
/// first instance, and no third is made.
#[test]
fn an_instance_at_its_limit_takes_a_request_once_one_of_its_own_ends() {
    let app = AppDir::new(&registry_and_chaos_manifest());
    let host = start(&app, &["--max-instance-concurrent-reuse-count", "2"]);
    // Each is sent once the one before is running, so the first two share
    // the first instance and the next two the second.
    let sleeper = |ms: u64, running: u32| {
        let url = host.url(&format!("/chaos/sleep?ms={ms}"));
        let sleeper = std::thread::spawn(move || send(&agent(), "GET", &url, None).status);
        wait_until("the sleeper to start", Duration::from_secs(10), || {
            host.metric_sum("http_server_active_requests", "") >= f64::from(running)
        });
        sleeper
    };
    let short = sleeper(300, 1);
    let long: Vec<_> = (2..=4).map(|running| sleeper(6000, running)).collect();
    let instances = || {
        host.metric_sum(
            "wasm_instantiation_duration_seconds_count",
            r#"spin_component="chaos""#,
        )
    };
    assert_eq!(instances(), 2.0, "two sleepers on each of two instances");
    assert_eq!(short.join().unwrap(), 200);
    // Its record ends after its lease, which frees the instance.
    wait_until("the short sleeper's end", Duration::from_secs(10), || {
        host.metric_sum("http_server_active_requests", "") <= 3.0
    });

    let next = get(&host.url("/chaos/next"));
    assert_eq!(next.status, 200);
    let line = host.wait_for_line("the next request's line", |l| {
        is_invocation(l) && l["path"] == "/chaos/next"
    });
    assert_eq!(
        (&line["instance_reused"], instances()),
        (&true.into(), 2.0),
        "the first instance had room once the short sleeper answered: {line}"
    );
    for sleeper in long {
        assert_eq!(sleeper.join().unwrap(), 200);
    }
}

fn is_marker(line: &Value) -> bool {
    line["source"] == "guest"
        && line["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("marker "))
}
