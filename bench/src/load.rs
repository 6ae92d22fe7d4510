//! The load generator: `concurrency` HTTP/1.1 keep-alive connections in a
//! closed loop (each sends its next request as soon as the previous answer has
//! been read in full), every latency kept, percentiles by nearest rank.
//!
//! It runs on one thread (a current-thread tokio runtime) so that, pinned to
//! one core, it competes with nothing but itself.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::HeaderValue;
use hyper::{Method, Request, StatusCode, Uri, header};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use tokio::net::TcpStream;

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

/// Latency percentiles of a set of requests, in milliseconds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Latency {
    /// Requests measured.
    pub count: u64,
    /// Mean.
    pub mean_ms: f64,
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Slowest.
    pub max_ms: f64,
}

impl Latency {
    /// Percentiles of `samples` (nanoseconds), by nearest rank.
    pub fn of(mut samples: Vec<u64>) -> Self {
        if samples.is_empty() {
            return Latency::default();
        }
        samples.sort_unstable();
        let n = samples.len();
        let rank = |p: f64| samples[((p * n as f64).ceil() as usize).clamp(1, n) - 1];
        let ms = |ns: u64| ns as f64 / 1e6;
        Latency {
            count: n as u64,
            mean_ms: samples.iter().map(|&s| s as f64).sum::<f64>() / n as f64 / 1e6,
            p50_ms: ms(rank(0.50)),
            p99_ms: ms(rank(0.99)),
            p999_ms: ms(rank(0.999)),
            max_ms: ms(samples[n - 1]),
        }
    }
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

/// A keep-alive HTTP/1.1 connection that reconnects when the server closes it.
struct Connection {
    addr: SocketAddr,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Connection {
    fn new(addr: SocketAddr) -> Self {
        Connection { addr, sender: None }
    }

    /// Sends one request and reads the whole answer.
    async fn exchange(
        &mut self,
        request: Request<Full<Bytes>>,
    ) -> anyhow::Result<(StatusCode, Bytes)> {
        if let Some(sender) = &mut self.sender
            && sender.ready().await.is_err()
        {
            // The server closed the connection after its last answer.
            self.sender = None;
        }
        let sender = match &mut self.sender {
            Some(sender) => sender,
            None => {
                let stream = TcpStream::connect(self.addr)
                    .await
                    .with_context(|| format!("connecting to {}", self.addr))?;
                stream.set_nodelay(true)?;
                let (sender, connection) =
                    hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
                tokio::spawn(connection);
                self.sender.insert(sender)
            }
        };
        let result = async {
            let response = sender.send_request(request).await?;
            let status = response.status();
            let body = response.into_body().collect().await?.to_bytes();
            anyhow::Ok((status, body))
        }
        .await;
        if result.is_err() {
            self.sender = None;
        }
        result
    }
}

/// What every request of a run shares, prepared once so that building the
/// next request costs little next to a 100k req/s server.
#[derive(Debug, Clone)]
struct Template {
    method: Method,
    path: String,
    /// The parsed path, when it has no `{id}`.
    uri: Option<Uri>,
    host: HeaderValue,
    body: Option<String>,
    /// The body, when it has no `{n}`.
    fixed_body: Option<Bytes>,
}

impl Template {
    fn new(method: &Method, addr: SocketAddr, path: &str, body: Option<&str>) -> Self {
        Template {
            method: method.clone(),
            path: path.to_owned(),
            uri: (!path.contains("{id}"))
                .then(|| path.parse().ok())
                .flatten(),
            host: HeaderValue::try_from(addr.to_string())
                .expect("a socket address is a valid header value"),
            body: body.map(str::to_owned),
            fixed_body: body
                .filter(|b| !b.contains("{n}"))
                .map(|b| Bytes::copy_from_slice(b.as_bytes())),
        }
    }

    /// The `n`-th request, with `id` in place of `{id}`.
    fn build(&self, id: Option<&str>, n: u64) -> Request<Full<Bytes>> {
        let uri = match (&self.uri, id) {
            (Some(uri), _) => uri.clone(),
            (None, Some(id)) => self.path.replace("{id}", id).parse().expect("a valid path"),
            (None, None) => self.path.parse().expect("a valid path"),
        };
        let mut request = Request::new(Full::new(Bytes::new()));
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = uri;
        let headers = request.headers_mut();
        headers.insert(header::HOST, self.host.clone());
        headers.insert(header::USER_AGENT, HeaderValue::from_static("hero-bench"));
        if let Some(body) = &self.body {
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            let bytes = match &self.fixed_body {
                Some(fixed) => fixed.clone(),
                None => Bytes::from(body.replace("{n}", &n.to_string())),
            };
            *request.body_mut() = Full::new(bytes);
        }
        request
    }
}

/// Runs the load described by `spec` and reports what it measured.
pub async fn run(spec: LoadSpec) -> anyhow::Result<LoadReport> {
    if spec.path.contains("{id}") && spec.ids.is_empty() {
        bail!("the path has {{id}} but no ids were given");
    }
    let template = Arc::new(Template::new(
        &spec.method,
        spec.addr,
        &spec.path,
        spec.body.as_deref(),
    ));
    let spec = Arc::new(spec);
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let measure_from = started + spec.warmup;

    let mut workers = Vec::with_capacity(spec.concurrency);
    for worker in 0..spec.concurrency {
        let spec = Arc::clone(&spec);
        let template = Arc::clone(&template);
        let stop = Arc::clone(&stop);
        workers.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            let mut connection = Connection::new(spec.addr);
            // Each connection walks the id list from its own starting point.
            let mut n = worker as u64 * 7919;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let id =
                    (!spec.ids.is_empty()).then(|| spec.ids[n as usize % spec.ids.len()].as_str());
                let request = template.build(id, n);
                let sent = Instant::now();
                let outcome =
                    tokio::time::timeout(REQUEST_TIMEOUT, connection.exchange(request)).await;
                let done = Instant::now();
                if sent < measure_from || stop.load(Ordering::Relaxed) {
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
                        connection.sender = None;
                        tally.error(format!("no answer within {REQUEST_TIMEOUT:?}"));
                    }
                }
            }
            tally
        }));
    }

    tokio::time::sleep_until((measure_from + spec.duration).into()).await;
    let scrape = match &spec.scrape {
        Some(scrape) => Some(scraper(scrape.clone()).await),
        None => None,
    };
    // Only now is the measured window over: the load went on while scraping.
    stop.store(true, Ordering::Relaxed);
    let stopped = Instant::now();

    let mut total = Tally::default();
    let deadline = tokio::time::Instant::from(stopped + DRAIN_GRACE);
    for worker in workers {
        match tokio::time::timeout_at(deadline, worker).await {
            Ok(Ok(tally)) => total.merge(tally),
            Ok(Err(panic)) => bail!("a load worker failed: {panic}"),
            Err(_) => total.error("a request was still in flight when the run ended".into()),
        }
    }

    let measured_s = (stopped - measure_from).as_secs_f64();
    let non_2xx = total
        .statuses
        .iter()
        .filter(|(status, _)| !(200..300).contains(*status))
        .map(|(_, count)| count)
        .sum();
    Ok(LoadReport {
        measured_s,
        rps: total.samples.len() as f64 / measured_s,
        latency: Latency::of(total.samples),
        non_2xx,
        transport_errors: total.transport_errors,
        statuses: total.statuses,
        error_samples: total.error_samples,
        scrape,
    })
}

/// Scrapes `spec.count` times, one after the other.
async fn scraper(spec: ScrapeSpec) -> ScrapeReport {
    let mut connection = Connection::new(spec.addr);
    let template = Template::new(&Method::GET, spec.addr, &spec.path, None);
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

/// What seeding did.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SeedReport {
    /// Heroes created.
    pub created: usize,
    /// Requests that failed or did not answer 201.
    pub errors: u64,
    /// Wall-clock seconds.
    pub seconds: f64,
}

/// Creates `count` heroes with `POST /heroes` over `concurrency` connections
/// and writes their ids, one a line, in creation order, to `out`.
pub async fn seed(
    addr: SocketAddr,
    body: &str,
    count: usize,
    concurrency: usize,
    out: &Path,
) -> anyhow::Result<SeedReport> {
    let started = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for _ in 0..concurrency.max(1) {
        let next = Arc::clone(&next);
        let template = Template::new(&Method::POST, addr, "/heroes", Some(body));
        workers.push(tokio::spawn(async move {
            let mut connection = Connection::new(addr);
            let mut ids = Vec::new();
            let mut errors = 0u64;
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= count as u64 {
                    break;
                }
                let request = template.build(None, n);
                let created = match connection.exchange(request).await {
                    Ok((StatusCode::CREATED, body)) => {
                        serde_json::from_slice::<serde_json::Value>(&body)
                            .ok()
                            .and_then(|hero| hero["id"].as_str().map(|id| (n, id.to_owned())))
                    }
                    _ => None,
                };
                match created {
                    Some(id) => ids.push(id),
                    None => errors += 1,
                }
                if errors > 100 {
                    break;
                }
            }
            (ids, errors)
        }));
    }
    let mut ids = Vec::with_capacity(count);
    let mut errors = 0;
    for worker in workers {
        let (some, failed) = worker.await?;
        ids.extend(some);
        errors += failed;
    }
    if errors > 100 {
        bail!("seeding failed: more than 100 requests did not create a hero");
    }
    ids.sort_unstable();
    let text: String = ids.iter().map(|(_, id)| format!("{id}\n")).collect();
    std::fs::write(out, text).with_context(|| format!("writing {}", out.display()))?;
    Ok(SeedReport {
        created: ids.len(),
        errors,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Reads ids written by [`seed`].
pub fn read_ids(path: &Path) -> anyhow::Result<Vec<String>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(text
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank_in_milliseconds() {
        // 1..=1000 ms, shuffled.
        let samples: Vec<u64> = (1..=1000u64).rev().map(|ms| ms * 1_000_000).collect();
        let latency = Latency::of(samples);
        assert_eq!(latency.count, 1000);
        assert_eq!(latency.p50_ms, 500.0);
        assert_eq!(latency.p99_ms, 990.0);
        assert_eq!(latency.p999_ms, 999.0);
        assert_eq!(latency.max_ms, 1000.0);
        assert_eq!(latency.mean_ms, 500.5);
    }

    #[test]
    fn no_samples_give_zeroes() {
        assert_eq!(Latency::of(Vec::new()).count, 0);
    }

    #[test]
    fn request_substitutes_id_and_counter() {
        let addr: SocketAddr = ([127, 0, 0, 1], 1).into();
        let template = Template::new(
            &Method::POST,
            addr,
            "/heroes/{id}",
            Some(r#"{"name":"Hero {n}"}"#),
        );
        let request = template.build(Some("01ABC"), 7);
        assert_eq!(request.uri(), "/heroes/01ABC");
        assert_eq!(request.headers()[header::HOST], "127.0.0.1:1");
        assert_eq!(request.headers()[header::CONTENT_TYPE], "application/json");
        assert_eq!(request.method(), Method::POST);
        let body = futures_body(request);
        assert_eq!(body, r#"{"name":"Hero 7"}"#);
    }

    fn futures_body(request: Request<Full<Bytes>>) -> String {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let bytes = runtime
            .block_on(request.into_body().collect())
            .unwrap()
            .to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }
}
