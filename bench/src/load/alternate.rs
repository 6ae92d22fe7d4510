//! Two servers loaded in turn by one load generator: short turns in the
//! order A B B A A B B A …, each side's connections kept open and idle
//! while it waits, so that both sides see the machine as it was within a
//! fraction of a second of each other. Between turns the side whose turn
//! ended gets its last answers before the next side sends: the two servers
//! never share the core, and no request waits on the other server.
//!
//! On a virtual machine whose core speed drifts from one second to the next,
//! loading one server for a few seconds and then the other prices the drift
//! along with the difference between them. Turns of a few hundred
//! milliseconds, in an order whose every four turns are balanced, give each
//! side many short stretches spread over the same seconds, so the drift
//! averages out on both (on the benchmark's machine it is faster than a
//! turn: it is averaged, not cancelled).

use std::time::{Duration, Instant};

use anyhow::bail;
use tokio::sync::watch;

use super::{Gate, LoadReport, LoadSpec, Shared, collect, connection_loop, report};

/// Whose turn it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Turn {
    /// Between turns: nobody sends.
    Between,
    /// `side`'s connections may send; what they send is counted when
    /// `measured` (not during the warm-up).
    Of { side: usize, measured: bool },
    /// The run is over: no more requests.
    Over,
}

/// The sides of `turns` measured turns: A B B A, repeated (B A A B when
/// `first` is 1), so that each side goes first and last equally often and
/// neither is always the one that follows the other.
fn order(turns: usize, first: usize) -> impl Iterator<Item = usize> {
    (0..turns).map(move |turn| first ^ usize::from(matches!(turn % 4, 1 | 2)))
}

/// How many turns of `turn` length each side needs to be measured for at
/// least `duration`.
fn turns_per_side(duration: Duration, turn: Duration) -> usize {
    (duration.as_secs_f64() / turn.as_secs_f64())
        .ceil()
        .max(1.0) as usize
}

/// Loads the two servers of `specs` in turns of `turn`, the side numbered
/// `first` (0 or 1) taking the first: a warm-up of the first spec's
/// `warmup`, the sides taking turns, then measured turns until each side
/// has been measured for its `duration` (rounded up to whole turns). A
/// request counts for the turn in which it was sent, and a side's
/// throughput is what it answered over its turns, each from its first
/// request to its last answer. Reports each side, in the order given.
pub async fn alternate(
    specs: [LoadSpec; 2],
    turn: Duration,
    first: usize,
) -> anyhow::Result<[LoadReport; 2]> {
    if first > 1 {
        bail!("the side that goes first is 0 or 1, not {first}");
    }
    if turn.is_zero() {
        bail!("a turn must last longer than zero");
    }
    if specs.iter().any(|spec| spec.scrape.is_some()) {
        bail!("an alternation cannot scrape");
    }
    let warmup = specs[0].warmup;
    let per_side = turns_per_side(specs[0].duration.max(specs[1].duration), turn);
    let [a, b] = specs;
    let sides = [Shared::new(a)?, Shared::new(b)?];
    let (turns, watcher) = watch::channel(Turn::Between);
    let mut workers = [Vec::new(), Vec::new()];
    for (side, shared) in sides.iter().enumerate() {
        for worker in 0..shared.spec.concurrency {
            let gate = Gate::Turns {
                side,
                turns: watcher.clone(),
            };
            workers[side].push(tokio::spawn(connection_loop(shared.clone(), worker, gate)));
        }
    }

    // One turn: `side` sends for `length`, then gets its last answers.
    // Returns how long that took: what was sent in a turn was answered in
    // it, so the rate is unbiased (counted up to the close instead, each
    // turn would add the requests in flight at its start, a bias as large
    // as the side is slow).
    let take_turn = async |side: usize, measured: bool, length: Duration| {
        let began = Instant::now();
        let _ = turns.send(Turn::Of { side, measured });
        tokio::time::sleep(length).await;
        let _ = turns.send(Turn::Between);
        sides[side].drain().await;
        began.elapsed()
    };
    let warmup_turns = turns_per_side(warmup, turn);
    for side in (0..warmup_turns * 2).map(|t| first ^ (t % 2)) {
        take_turn(side, false, turn.min(warmup)).await;
    }
    let mut measured = [Duration::ZERO; 2];
    for side in order(per_side * 2, first) {
        measured[side] += take_turn(side, true, turn).await;
    }
    let _ = turns.send(Turn::Over);
    let stopped = Instant::now();
    let mut reports = [LoadReport::default(), LoadReport::default()];
    for ((report_of, workers), measured) in reports.iter_mut().zip(workers).zip(measured) {
        *report_of = report(
            collect(workers, stopped).await?,
            measured.as_secs_f64(),
            None,
        );
    }
    Ok(reports)
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::net::SocketAddr;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    use bytes::Bytes;
    use http_body_util::Full;
    use hyper::{Method, Request, Response, body::Incoming, service::service_fn};
    use hyper_util::rt::TokioIo;
    use tokio::net::TcpListener;

    use super::*;

    #[test]
    fn every_four_turns_are_balanced() {
        let sides: Vec<usize> = order(8, 0).collect();
        assert_eq!(sides, [0, 1, 1, 0, 0, 1, 1, 0]);
        let sides: Vec<usize> = order(8, 1).collect();
        assert_eq!(sides, [1, 0, 0, 1, 1, 0, 0, 1]);
        assert_eq!(
            turns_per_side(Duration::from_secs(3), Duration::from_millis(250)),
            12
        );
        assert_eq!(
            turns_per_side(Duration::from_millis(100), Duration::from_millis(250)),
            1
        );
    }

    /// Two servers' requests being handled, by server, and how many
    /// requests arrived while the other server was handling one.
    #[derive(Default)]
    struct Watch {
        handling: [AtomicU64; 2],
        received: [AtomicU64; 2],
        overlaps: AtomicU64,
    }

    /// Server `index` of `watch`: answers 200 after `delay`.
    async fn server(index: usize, delay: Duration, watch: Arc<Watch>) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let watch = watch.clone();
                let service = service_fn(move |_: Request<Incoming>| {
                    let watch = watch.clone();
                    async move {
                        watch.received[index].fetch_add(1, Ordering::SeqCst);
                        watch.handling[index].fetch_add(1, Ordering::SeqCst);
                        if watch.handling[1 - index].load(Ordering::SeqCst) > 0 {
                            watch.overlaps.fetch_add(1, Ordering::SeqCst);
                        }
                        tokio::time::sleep(delay).await;
                        watch.handling[index].fetch_sub(1, Ordering::SeqCst);
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
                    }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service),
                );
            }
        });
        addr
    }

    fn spec(addr: SocketAddr) -> LoadSpec {
        LoadSpec {
            addr,
            method: Method::GET,
            path: "/".into(),
            body: None,
            headers: Vec::new(),
            client_addr_header: None,
            ids: Vec::new(),
            concurrency: 2,
            warmup: Duration::from_millis(100),
            duration: Duration::from_millis(400),
            scrape: None,
        }
    }

    /// The side that answers in 4 ms is measured at most 2 connections ÷
    /// 4 ms = 500 req/s, the immediate one far faster; each is measured over its own turns, and
    /// no request reaches a server while the other is handling one.
    #[test]
    fn each_side_is_measured_over_its_own_turns_alone() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let watch = Arc::new(Watch::default());
        let [fast, slow] = runtime.block_on(async {
            let fast = server(0, Duration::ZERO, watch.clone()).await;
            let slow = server(1, Duration::from_millis(4), watch.clone()).await;
            alternate([spec(fast), spec(slow)], Duration::from_millis(50), 1)
                .await
                .unwrap()
        });
        for (index, side) in [&fast, &slow].into_iter().enumerate() {
            // Eight turns of 50 ms each and their last answers.
            assert!(
                (0.4..0.6).contains(&side.measured_s),
                "measured for {} s",
                side.measured_s
            );
            assert_eq!(side.transport_errors, 0, "{side:?}");
            assert_eq!(side.statuses.keys().collect::<Vec<_>>(), [&200]);
            // What was received beyond what was measured is the warm-up's.
            assert!(watch.received[index].load(Ordering::SeqCst) > side.latency.count);
        }
        assert_eq!(watch.overlaps.load(Ordering::SeqCst), 0);
        assert!(
            (200.0..=510.0).contains(&slow.rps),
            "slow side {} req/s",
            slow.rps
        );
        assert!(
            fast.rps > 3.0 * slow.rps,
            "fast {} against slow {}",
            fast.rps,
            slow.rps
        );
        assert!(slow.latency.p50_ms >= 4.0, "{:?}", slow.latency);
    }

    #[test]
    fn a_zero_turn_a_scrape_or_a_third_side_is_refused() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let error = runtime
            .block_on(alternate([spec(addr), spec(addr)], Duration::ZERO, 0))
            .unwrap_err();
        assert!(error.to_string().contains("longer than zero"), "{error}");
        let mut scraping = spec(addr);
        scraping.scrape = Some(crate::load::ScrapeSpec {
            addr,
            path: "/metrics".into(),
            count: 1,
            interval: Duration::ZERO,
        });
        let turn = Duration::from_millis(50);
        let error = runtime
            .block_on(alternate([spec(addr), scraping], turn, 0))
            .unwrap_err();
        assert!(error.to_string().contains("cannot scrape"), "{error}");
        let error = runtime
            .block_on(alternate([spec(addr), spec(addr)], turn, 2))
            .unwrap_err();
        assert!(error.to_string().contains("0 or 1"), "{error}");
    }
}
