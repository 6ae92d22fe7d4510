//! Crowds of bad clients against the real host over real sockets: 1,000
//! clients trickling request bodies and 100 that never read their responses
//! beside one healthy client, a flood of idle connections, and a crowd of
//! slow senders that comes and goes, with the host's memory before, during
//! and after. The figures are printed (run with
//! `--nocapture`); speed is measured here, never asserted.

use std::io::Write;
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::support::{AppDir, Host, agent, cpu_seconds, registry_and_chaos_manifest, send, start};

/// Raises this process's open-files soft limit to the hard limit: the
/// crowds need more sockets than the usual default of 1,024.
fn raise_open_files() -> u64 {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let raised = Rlimit {
        current: limit.maximum,
        maximum: limit.maximum,
    };
    setrlimit(Resource::Nofile, raised).expect("raising the open-files limit");
    limit.maximum.unwrap_or(u64::MAX)
}

/// A connection to `addr` with a receive buffer of a few KiB, as a client
/// that never reads would leave it.
fn non_reader(addr: std::net::SocketAddr) -> TcpStream {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&addr.into()).unwrap();
    socket.into()
}

/// The `q` quantile of sorted `values`.
fn quantile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

#[test]
fn a_healthy_client_sees_no_errors_beside_slow_senders_and_non_readers() {
    let _heavy = crate::support::exclusive();
    let available = raise_open_files();
    assert!(
        available >= 4096,
        "the scenario needs 4,096 open files; the hard limit is {available}"
    );
    let app = AppDir::new(&registry_and_chaos_manifest());
    let host = Arc::new(start(&app, &["--request-body-timeout", "120s"]));
    let value = "v".repeat(256 * 1024);
    let stored = send(
        &agent(),
        "PUT",
        &host.url("/chaos/kvop?op=set&key=big"),
        Some(&value),
    );
    assert_eq!(stored.status, 200, "{}", stored.body);
    // 1,000 clients send a head announcing 1,000 bytes, then a byte a
    // second: given two minutes, they trickle for the whole run.
    let head = b"POST /heroes HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n";
    let mut slow: Vec<TcpStream> = (0..1000)
        .map(|_| {
            let mut stream = TcpStream::connect(host.addr).unwrap();
            stream.write_all(head).unwrap();
            stream
        })
        .collect();
    // 100 clients with small receive buffers each ask for 20 responses of
    // 256 KiB and never read one.
    let ask = b"GET /chaos/kvop?op=get&key=big HTTP/1.1\r\nHost: x\r\n\r\n".repeat(20);
    let non_readers: Vec<TcpStream> = (0..100)
        .map(|_| {
            let mut stream = non_reader(host.addr);
            stream.write_all(&ask).unwrap();
            stream
        })
        .collect();
    // The kernel's socket buffers take a few MiB of responses for each
    // before the host's writes stall (ten of twenty on Linux's defaults):
    // measure beside them once they have, each holding a request slot.
    let settling = Instant::now();
    let logged = || {
        host.invocations()
            .iter()
            .filter(|l| l["path"] == "/chaos/kvop")
            .count()
    };
    let mut last = usize::MAX;
    while logged() != last && settling.elapsed() < Duration::from_secs(180) {
        last = logged();
        for stream in &mut slow {
            let _ = stream.write_all(b"x");
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    println!(
        "the non-readers stalled after {} responses of 2,000, in {:?}",
        last - 1,
        settling.elapsed()
    );
    let running = Arc::new(AtomicBool::new(true));
    let healthy = {
        let (host, running) = (host.clone(), running.clone());
        std::thread::spawn(move || {
            let agent = agent();
            let mut latencies = Vec::new();
            let mut failures = Vec::new();
            while running.load(Ordering::Relaxed) {
                let started = Instant::now();
                let reply = send(&agent, "GET", &host.url("/heroes"), None);
                latencies.push(started.elapsed());
                if reply.status != 200 {
                    failures.push(reply.status);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            (latencies, failures)
        })
    };
    let started = Instant::now();
    let cpu = cpu_seconds(host.pid());
    while started.elapsed() < Duration::from_secs(8) {
        for stream in &mut slow {
            let _ = stream.write_all(b"x");
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    running.store(false, Ordering::Relaxed);
    println!(
        "host CPU in the window: {:.2} s",
        cpu_seconds(host.pid()) - cpu
    );
    let (mut latencies, failures) = healthy.join().unwrap();
    latencies.sort();
    println!(
        "healthy client beside 1,000 slow senders and 100 non-readers: {} requests, \
         {} errors, p50 {:?}, p99 {:?}, max {:?}",
        latencies.len(),
        failures.len(),
        quantile(&latencies, 0.5),
        quantile(&latencies, 0.99),
        latencies.last().unwrap()
    );
    assert!(
        failures.is_empty(),
        "the healthy client failed: {failures:?}"
    );
    assert!(latencies.len() >= 50, "{} requests", latencies.len());
    drop((slow, non_readers));
}

/// A host serving the registry with `args`, in a process allowed the
/// `files` open files `what` needs, warmed by 50 lists and left a second to
/// settle (so its memory is measured at rest).
fn settled_host(args: &[&str], files: u64, what: &str) -> (AppDir, Host) {
    let available = raise_open_files();
    assert!(
        available >= files,
        "{what} needs {files} open files; the hard limit is {available}"
    );
    let app = AppDir::registry();
    let host = start(&app, args);
    let agent = agent();
    for _ in 0..50 {
        assert_eq!(send(&agent, "GET", &host.url("/heroes"), None).status, 200);
    }
    std::thread::sleep(Duration::from_secs(1));
    (app, host)
}

/// 6,000 slow senders (a head, a slice of a 100 KB body, then nothing) come
/// and go: the host's memory, which their buffers took, comes back near
/// where it was instead of staying at the crowd's peak.
#[test]
fn memory_comes_back_after_a_crowd_of_slow_senders_leaves() {
    let _heavy = crate::support::exclusive();
    let (_app, host) = settled_host(&[], 8_000, "the crowd");
    let agent = agent();
    let before = host.rss_kb();
    let head = b"POST /heroes HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n\
                 content-length: 100000\r\n\r\n";
    let crowd: Vec<TcpStream> = (0..6000)
        .map(|_| {
            let mut stream = TcpStream::connect(host.addr).unwrap();
            stream.write_all(head).unwrap();
            stream.write_all(&[b'{'; 2000]).unwrap();
            stream
        })
        .collect();
    std::thread::sleep(Duration::from_secs(3));
    let during = host.rss_kb();
    drop(crowd);
    let started = Instant::now();
    let mut after = host.rss_kb();
    while after > before + 32 * 1024 && started.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(500));
        after = host.rss_kb();
    }
    println!(
        "6,000 slow senders: RSS before {before} KiB, during {during} KiB, \
         after {after} KiB ({:.1} s after they left)",
        started.elapsed().as_secs_f64()
    );
    assert!(
        during > before + 64 * 1024,
        "the crowd should take memory to give back: {before} KiB to {during} KiB"
    );
    assert!(
        after <= before + 32 * 1024,
        "memory stayed at {after} KiB after the crowd left ({before} KiB before, {during} KiB during)"
    );
    assert_eq!(send(&agent, "GET", &host.url("/heroes"), None).status, 200);
}

#[test]
fn a_flood_of_idle_connections_is_held_to_the_idle_cap() {
    let _heavy = crate::support::exclusive();
    let args = [
        "--max-idle-connections",
        "500",
        "--header-read-timeout",
        "120s",
    ];
    let (_app, host) = settled_host(&args, 12_000, "the flood");
    let (before, fds_before) = (host.rss_kb(), host.metric_sum("process_open_fds", ""));
    let flood: Vec<TcpStream> = (0..9000)
        .map(|_| TcpStream::connect(host.addr).unwrap())
        .collect();
    // The host takes every connection, closing the longest idle past the
    // cap as it goes.
    std::thread::sleep(Duration::from_secs(3));
    let (during, fds_during) = (host.rss_kb(), host.metric_sum("process_open_fds", ""));
    let still_open = flood
        .iter()
        .filter(|stream| {
            stream.set_nonblocking(true).unwrap();
            let mut byte = [0u8; 1];
            matches!(stream.peek(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
        })
        .count();
    drop(flood);
    let agent = crate::support::agent();
    for _ in 0..50 {
        assert_eq!(send(&agent, "GET", &host.url("/heroes"), None).status, 200);
    }
    std::thread::sleep(Duration::from_secs(2));
    let after = host.rss_kb();
    println!(
        "9,000 idle connections, cap 500: {still_open} left open, {fds_during} descriptors; \
         RSS before {before} KiB, during {during} KiB, after {after} KiB"
    );
    // Past the cap, the longest idle are closed, and a sixteenth of the cap
    // more (see the registry).
    assert!(
        (500 - 500 / 16 - 1..=500).contains(&still_open),
        "{still_open} of the flood left open"
    );
    assert!(fds_during <= fds_before + 501.0, "{fds_during} descriptors");
    // Memory follows: without the cap, 10,100 idle connections took the
    // host to 337 MiB, for good; held to the cap, it grows a few MiB.
    assert!(
        during.max(after) < before + 64 * 1024,
        "RSS grew from {before} KiB to {during} KiB (after: {after} KiB)"
    );
}
