//! The load generator: `concurrency` HTTP/1.1 keep-alive connections in a
//! closed loop (each sends its next request as soon as the previous answer has
//! been read in full), every latency kept, percentiles by nearest rank.
//!
//! It runs on one thread (a current-thread tokio runtime) so that, pinned to
//! one core, it competes with nothing but itself.

mod alternate;
mod connection;
mod latency;
mod seed;
mod template;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use hyper::Method;
use hyper::header::{HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, watch};

use alternate::Turn;
pub use alternate::alternate;
use connection::Connection;
pub use latency::Latency;
pub use seed::{SeedReport, read_ids, seed};
use template::Template;
pub use template::parse_header;

/// Longest one request may take before it counts as a transport error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long in-flight requests get to finish once the run is over.
const DRAIN_GRACE: Duration = Duration::from_secs(5);
/// Distinct transport error messages kept for the report.
const MAX_ERROR_SAMPLES: usize = 5;

/// What to send, where, how hard and for how long.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// The server's address.
    pub addr: SocketAddr,
    /// Request method.
    pub method: Method,
    /// Request path and query; `{id}` is replaced by an id of `ids`.
    pub path: String,
    /// JSON request body, if any; `{n}` is replaced by a request counter.
    pub body: Option<String>,
    /// Headers sent with every request.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// A header naming each connection's own address (`ip:port`), if any.
    pub client_addr_header: Option<HeaderName>,
    /// Ids to substitute for `{id}`, cycled through.
    pub ids: Vec<String>,
    /// Connections, each with one request in flight.
    pub concurrency: usize,
    /// Load before measuring starts.
    pub warmup: Duration,
    /// Measured load.
    pub duration: Duration,
    /// A scraper to run beside the load, if any.
    pub scrape: Option<ScrapeSpec>,
}

/// A sequential scraper beside the load: its latencies are the admin port's
/// under saturation. The load goes on until it has finished.
#[derive(Debug, Clone)]
pub struct ScrapeSpec {
    /// Address of the metrics endpoint.
    pub addr: SocketAddr,
    /// Its path, e.g. `/metrics`.
    pub path: String,
    /// How many scrapes to measure.
    pub count: usize,
    /// Pause between the end of one scrape and the start of the next.
    pub interval: Duration,
}

/// What one load run measured.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LoadReport {
    /// Seconds actually measured (at least the requested duration).
    pub measured_s: f64,
    /// Completed requests per second in the measured window (any status).
    pub rps: f64,
    /// Latency of requests completed in the measured window.
    pub latency: Latency,
    /// Responses with a status outside 2xx.
    pub non_2xx: u64,
    /// Connection failures, broken connections and timeouts.
    pub transport_errors: u64,
    /// Count per response status.
    pub statuses: BTreeMap<u16, u64>,
    /// A few distinct transport error messages.
    pub error_samples: Vec<String>,
    /// Scrape latencies, when a scraper ran.
    pub scrape: Option<ScrapeReport>,
}

/// What the scraper measured.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ScrapeReport {
    /// Latency of successful scrapes.
    pub latency: Latency,
    /// Scrapes that failed or answered non-2xx.
    pub errors: u64,
    /// Size of the last scrape's body, in bytes.
    pub body_bytes: usize,
}

/// One connection's tallies, merged at the end.
#[derive(Default)]
struct Tally {
    samples: Vec<u64>,
    statuses: BTreeMap<u16, u64>,
    transport_errors: u64,
    error_samples: Vec<String>,
}

impl Tally {
    fn error(&mut self, message: String) {
        self.transport_errors += 1;
        if self.error_samples.len() < MAX_ERROR_SAMPLES && !self.error_samples.contains(&message) {
            self.error_samples.push(message);
        }
    }

    fn merge(&mut self, other: Tally) {
        self.samples.extend(other.samples);
        for (status, count) in other.statuses {
            *self.statuses.entry(status).or_default() += count;
        }
        self.transport_errors += other.transport_errors;
        for message in other.error_samples {
            if self.error_samples.len() < MAX_ERROR_SAMPLES
                && !self.error_samples.contains(&message)
            {
                self.error_samples.push(message);
            }
        }
    }
}

/// What every connection of a run (or of one side of an alternation)
/// shares.
struct Shared {
    spec: LoadSpec,
    template: Template,
    stop: AtomicBool,
    /// Requests sent and not yet answered.
    in_flight: AtomicUsize,
    /// Notified when `in_flight` falls to zero.
    drained: Notify,
}

impl Shared {
    fn new(spec: LoadSpec) -> anyhow::Result<Arc<Self>> {
        if spec.path.contains("{id}") && spec.ids.is_empty() {
            bail!("the path has {{id}} but no ids were given");
        }
        let template = Template::new(
            &spec.method,
            spec.addr,
            &spec.path,
            spec.body.as_deref(),
            spec.headers.clone(),
        );
        Ok(Arc::new(Shared {
            spec,
            template,
            stop: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            drained: Notify::new(),
        }))
    }

    /// Waits until every request sent has been answered (or given up on).
    async fn drain(&self) {
        while self.in_flight.load(Ordering::Acquire) > 0 {
            self.drained.notified().await;
        }
    }
}

/// When a connection may send, and whether what it sends is measured.
enum Gate {
    /// Always open; measured from this instant on.
    From(Instant),
    /// Open on this side's turns of an alternation; measured on its
    /// measured turns.
    Turns {
        side: usize,
        turns: watch::Receiver<Turn>,
    },
}

impl Gate {
    /// Waits until a request may be sent; says whether it is measured, or
    /// `None` once the run is over.
    async fn open(&mut self, stop: &AtomicBool) -> Option<bool> {
        match self {
            Gate::From(from) => (!stop.load(Ordering::Relaxed)).then(|| Instant::now() >= *from),
            Gate::Turns { side, turns } => {
                let turn = turns
                    .wait_for(|turn| match turn {
                        Turn::Of { side: of, .. } => of == side,
                        Turn::Over => true,
                        Turn::Between => false,
                    })
                    .await
                    .ok()?;
                match *turn {
                    Turn::Of { measured, .. } => Some(measured),
                    Turn::Over | Turn::Between => None,
                }
            }
        }
    }
}

/// Runs the load described by `spec` and reports what it measured.
pub async fn run(spec: LoadSpec) -> anyhow::Result<LoadReport> {
    let shared = Shared::new(spec)?;
    let measure_from = Instant::now() + shared.spec.warmup;
    let workers: Vec<_> = (0..shared.spec.concurrency)
        .map(|worker| {
            let gate = Gate::From(measure_from);
            tokio::spawn(connection_loop(Arc::clone(&shared), worker, gate))
        })
        .collect();

    tokio::time::sleep_until((measure_from + shared.spec.duration).into()).await;
    let scrape = match &shared.spec.scrape {
        Some(scrape) => Some(scraper(scrape.clone()).await),
        None => None,
    };
    // Only now is the measured window over: the load went on while scraping.
    shared.stop.store(true, Ordering::Relaxed);
    let stopped = Instant::now();
    let total = collect(workers, stopped).await?;
    Ok(report(
        total,
        (stopped - measure_from).as_secs_f64(),
        scrape,
    ))
}

/// Waits for a run's connections, up to [`DRAIN_GRACE`] after `stopped`,
/// and merges their tallies.
async fn collect(
    workers: Vec<tokio::task::JoinHandle<Tally>>,
    stopped: Instant,
) -> anyhow::Result<Tally> {
    let mut total = Tally::default();
    let deadline = tokio::time::Instant::from(stopped + DRAIN_GRACE);
    for worker in workers {
        match tokio::time::timeout_at(deadline, worker).await {
            Ok(Ok(tally)) => total.merge(tally),
            Ok(Err(panic)) => bail!("a load worker failed: {panic}"),
            Err(_) => total.error("a request was still in flight when the run ended".into()),
        }
    }
    Ok(total)
}

/// One connection: sends requests one after the other until told to stop,
/// tallying those sent inside the measured window.
async fn connection_loop(shared: Arc<Shared>, worker: usize, mut gate: Gate) -> Tally {
    let spec = &shared.spec;
    let mut tally = Tally::default();
    let mut connection = Connection::new(spec.addr, spec.client_addr_header.clone());
    // Each connection walks the id list from its own starting point.
    let mut n = worker as u64 * 7919;
    while let Some(measured) = gate.open(&shared.stop).await {
        n += 1;
        let id = (!spec.ids.is_empty()).then(|| spec.ids[n as usize % spec.ids.len()].as_str());
        let request = shared.template.build(id, n);
        shared.in_flight.fetch_add(1, Ordering::AcqRel);
        let sent = Instant::now();
        let outcome = tokio::time::timeout(REQUEST_TIMEOUT, connection.exchange(request)).await;
        let done = Instant::now();
        if shared.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            shared.drained.notify_one();
        }
        if !measured || shared.stop.load(Ordering::Relaxed) {
            if outcome.as_ref().map_or(true, |r| r.is_err()) {
                // Do not spin on a dead server during the warm-up.
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            continue;
        }
        match outcome {
            Ok(Ok((status, _body))) => {
                tally.samples.push((done - sent).as_nanos() as u64);
                *tally.statuses.entry(status.as_u16()).or_default() += 1;
            }
            Ok(Err(error)) => {
                tally.error(format!("{error:#}"));
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            Err(_) => {
                connection.reset();
                tally.error(format!("no answer within {REQUEST_TIMEOUT:?}"));
            }
        }
    }
    tally
}

/// The report of a run's merged tallies over `measured_s` seconds.
fn report(total: Tally, measured_s: f64, scrape: Option<ScrapeReport>) -> LoadReport {
    let non_2xx = total
        .statuses
        .iter()
        .filter(|(status, _)| !(200..300).contains(*status))
        .map(|(_, count)| count)
        .sum();
    LoadReport {
        measured_s,
        rps: total.samples.len() as f64 / measured_s,
        latency: Latency::of(total.samples),
        non_2xx,
        transport_errors: total.transport_errors,
        statuses: total.statuses,
        error_samples: total.error_samples,
        scrape,
    }
}

/// Scrapes `spec.count` times, one after the other.
async fn scraper(spec: ScrapeSpec) -> ScrapeReport {
    let mut connection = Connection::new(spec.addr, None);
    let template = Template::new(&Method::GET, spec.addr, &spec.path, None, Vec::new());
    let mut samples = Vec::with_capacity(spec.count);
    let mut errors = 0;
    let mut body_bytes = 0;
    for _ in 0..spec.count {
        let request = template.build(None, 0);
        let sent = Instant::now();
        match tokio::time::timeout(REQUEST_TIMEOUT, connection.exchange(request)).await {
            Ok(Ok((status, body))) if status.is_success() => {
                samples.push(sent.elapsed().as_nanos() as u64);
                body_bytes = body.len();
            }
            _ => errors += 1,
        }
        tokio::time::sleep(spec.interval).await;
    }
    ScrapeReport {
        latency: Latency::of(samples),
        errors,
        body_bytes,
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use bytes::Bytes;
    use http_body_util::Full;
    use hyper::{Request, Response, StatusCode, body::Incoming, service::service_fn};
    use hyper_util::rt::TokioIo;
    use tokio::net::TcpListener;

    use super::*;

    /// Answers 200 when the request carries `x-fixed: yes` and names its
    /// peer in `x-client`, else 400.
    async fn checking_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (stream, peer) = listener.accept().await.unwrap();
                let service = service_fn(move |request: Request<Incoming>| async move {
                    let headers = request.headers();
                    let ok = headers.get("x-fixed").is_some_and(|v| v == "yes")
                        && headers
                            .get("x-client")
                            .is_some_and(|v| v == peer.to_string().as_str());
                    let mut response = Response::new(Full::new(Bytes::new()));
                    if !ok {
                        *response.status_mut() = StatusCode::BAD_REQUEST;
                    }
                    Ok::<_, Infallible>(response)
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service),
                );
            }
        });
        addr
    }

    #[test]
    fn every_request_names_its_own_connection() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let report = runtime.block_on(async {
            let addr = checking_server().await;
            run(LoadSpec {
                addr,
                method: Method::GET,
                path: "/".into(),
                body: None,
                headers: vec![parse_header("x-fixed: yes").unwrap()],
                client_addr_header: Some(HeaderName::from_static("x-client")),
                ids: Vec::new(),
                concurrency: 3,
                warmup: Duration::ZERO,
                duration: Duration::from_millis(300),
                scrape: None,
            })
            .await
            .unwrap()
        });
        assert!(report.latency.count >= 3, "{report:?}");
        assert_eq!(
            report.statuses.keys().collect::<Vec<_>>(),
            [&200],
            "{report:?}"
        );
        assert_eq!(report.transport_errors, 0);
    }

    #[test]
    fn a_run_counts_statuses_and_non_2xx() {
        let mut total = Tally::default();
        let mut other = Tally::default();
        total.samples = vec![1_000_000; 3];
        total.statuses.insert(200, 3);
        other.samples = vec![2_000_000];
        other.statuses.insert(404, 1);
        other.error("reset".into());
        total.merge(other);
        let report = report(total, 2.0, None);
        assert_eq!(report.rps, 2.0);
        assert_eq!(report.non_2xx, 1);
        assert_eq!(report.transport_errors, 1);
        assert_eq!(report.latency.count, 4);
        assert_eq!(report.error_samples, ["reset"]);
    }
}
