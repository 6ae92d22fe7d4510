//! Body wrappers: the request body counts what is read, refuses more than
//! the limit and gives up on a client too slow to send it (it may be read
//! ahead before the guest runs); the response body counts what is sent and
//! finishes the request exactly once (end, error, or dropped because the
//! client went away).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use tokio::time::{Instant, Sleep};
use wasmtime_wasi_http::WasiBody;

use super::outcome::{ClientGone, Failure};

/// What polling either body for a frame gives.
type PolledFrame = Poll<Option<Result<Frame<Bytes>, wasmtime_wasi_http::Error>>>;

/// Bytes a request body has read (past the limit when the body was larger
/// than it), and whether it ran out of time.
#[derive(Default)]
pub struct BytesRead {
    bytes: AtomicU64,
    timed_out: AtomicBool,
}

impl BytesRead {
    /// Bytes read so far.
    pub fn get(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Whether the body did not arrive in time.
    pub fn timed_out(&self) -> bool {
        self.timed_out.load(Ordering::Relaxed)
    }
}

/// How long a request body may take to arrive, as Apache's mod_reqtimeout
/// counts it: `timeout` from the end of the head, plus a second for every
/// `min_rate` bytes received. A client trickling slower than that runs out
/// of time; a large upload at a decent rate never does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyTiming {
    /// Time allowed before any byte counts.
    pub timeout: Duration,
    /// Bytes per second that earn more time (0: none).
    pub min_rate: u64,
}

impl BodyTiming {
    /// When a body that started at `started` and has `read` bytes runs out
    /// of time.
    fn deadline(&self, started: Instant, read: u64) -> Instant {
        let earned = match self.min_rate {
            0 => Duration::ZERO,
            rate => Duration::from_secs_f64(read as f64 / rate as f64),
        };
        started + self.timeout + earned
    }
}

/// Why a request body could not be read.
#[derive(Debug)]
pub enum BodyFailure {
    /// More than the limit: 413.
    TooLarge(u64),
    /// Too slow: 408.
    TimedOut,
    /// The client's stream broke (bad chunked coding, disconnect).
    Broken(wasmtime_wasi_http::Error),
}

impl From<BodyFailure> for wasmtime_wasi_http::Error {
    fn from(failure: BodyFailure) -> Self {
        match failure {
            BodyFailure::TooLarge(read) => Self::HttpRequestBodySize(Some(read)),
            BodyFailure::TimedOut => Self::ConnectionReadTimeout,
            BodyFailure::Broken(error) => error,
        }
    }
}

/// The request body as the guest reads it.
pub struct RequestBody<B = hyper::body::Incoming> {
    inner: B,
    /// Data read ahead, handed out first.
    ahead: Option<Bytes>,
    /// Trailers read ahead.
    trailers: Option<HeaderMap>,
    /// Whether `inner` has ended.
    ended: bool,
    limit: u64,
    read: u64,
    counted: Arc<BytesRead>,
    timing: BodyTiming,
    started: Instant,
    /// Made when the client first keeps the body waiting.
    timer: Option<Pin<Box<Sleep>>>,
}

impl<B> RequestBody<B> {
    /// Wraps `inner`, allowing at most `limit` bytes, as fast as `timing`
    /// asks, counting into `counted`.
    pub fn new(inner: B, limit: u64, timing: BodyTiming, counted: Arc<BytesRead>) -> Self {
        RequestBody {
            inner,
            ahead: None,
            trailers: None,
            ended: false,
            limit,
            read: 0,
            counted,
            timing,
            started: Instant::now(),
            timer: None,
        }
    }
}

impl<B> RequestBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<wasmtime_wasi_http::Error>,
{
    /// Reads the body ahead, until it ends or `up_to` bytes are buffered: a
    /// small body is then whole before the guest runs, and a slow client
    /// holds no request slot or instance while it sends it.
    pub async fn read_ahead(&mut self, up_to: usize) -> Result<(), BodyFailure> {
        let mut ahead: Option<Bytes> = None;
        let mut more = BytesMut::new();
        while !self.ended && self.trailers.is_none() {
            let buffered = ahead.as_ref().map_or(0, Bytes::len) + more.len();
            if buffered >= up_to {
                break;
            }
            let Some(frame) = std::future::poll_fn(|cx| self.poll_inner(cx)).await? else {
                break;
            };
            match frame.into_data() {
                Ok(data) if ahead.is_none() => ahead = Some(data),
                Ok(data) => more.extend_from_slice(&data),
                Err(frame) => self.trailers = frame.into_trailers().ok(),
            }
        }
        self.ahead = match ahead {
            Some(first) if !more.is_empty() => {
                let mut joined = BytesMut::from(first);
                joined.extend_from_slice(&more);
                Some(joined.freeze())
            }
            other => other,
        };
        Ok(())
    }

    /// The next frame of `inner`, under the limit and the timing.
    fn poll_inner(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Option<Frame<Bytes>>, BodyFailure>> {
        if self.read > self.limit {
            return Poll::Ready(Err(BodyFailure::TooLarge(self.read)));
        }
        if self.ended {
            return Poll::Ready(Ok(None));
        }
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.read += data.len() as u64;
                    self.counted.bytes.store(self.read, Ordering::Relaxed);
                    if self.read > self.limit {
                        return Poll::Ready(Err(BodyFailure::TooLarge(self.read)));
                    }
                }
                Poll::Ready(Ok(Some(frame)))
            }
            Poll::Ready(Some(Err(error))) => Poll::Ready(Err(BodyFailure::Broken(error.into()))),
            Poll::Ready(None) => {
                self.ended = true;
                Poll::Ready(Ok(None))
            }
            Poll::Pending => self.poll_deadline(cx),
        }
    }

    /// Waiting for the client: out of time yet?
    fn poll_deadline(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Option<Frame<Bytes>>, BodyFailure>> {
        let deadline = self.timing.deadline(self.started, self.read);
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if timer.deadline() != deadline {
            timer.as_mut().reset(deadline);
        }
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.counted.timed_out.store(true, Ordering::Relaxed);
                Poll::Ready(Err(BodyFailure::TimedOut))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<B> RequestBody<B>
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<wasmtime_wasi_http::Error>,
{
    /// As the body type wasi:http expects.
    pub fn boxed(self) -> WasiBody {
        self.boxed_unsync()
    }
}

impl<B> Body for RequestBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<wasmtime_wasi_http::Error>,
{
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> PolledFrame {
        let this = &mut *self;
        if let Some(data) = this.ahead.take() {
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        if let Some(trailers) = this.trailers.take() {
            return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
        }
        this.poll_inner(cx)
            .map(|polled| polled.map_err(Into::into).transpose())
    }

    fn is_end_stream(&self) -> bool {
        self.ahead.is_none()
            && self.trailers.is_none()
            && (self.ended || self.inner.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        let ahead = self.ahead.as_ref().map_or(0, |a| a.len() as u64);
        let rest = if self.ended {
            SizeHint::with_exact(0)
        } else {
            self.inner.size_hint()
        };
        let mut hint = SizeHint::new();
        hint.set_lower(rest.lower() + ahead);
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper + ahead);
        }
        hint
    }
}

/// Told once how a response went: sent whole, failed, or abandoned.
pub trait Finish: Send + 'static {
    /// `sent`: body bytes written; `ending`: why it did not complete.
    fn finish(self, sent: u64, ending: Option<Failure>);

    /// Whether a clean end of the body really means the guest finished it: a
    /// trapped instance ends its stream early, and that must read as a
    /// failure, not as a complete response.
    fn cut_short(&self) -> Option<Failure> {
        None
    }

    /// Whether the response has a body hyper will send (not so for HEAD,
    /// 204 and 304: hyper drops such a body without reading it, which is a
    /// complete response, not a client that left).
    fn has_body(&self) -> bool {
        true
    }
}

/// The response body hyper sends.
pub struct ResponseBody<F: Finish> {
    inner: WasiBody,
    sent: u64,
    finish: Option<F>,
}

impl<F: Finish> ResponseBody<F> {
    /// Wraps `inner`; `finish` runs exactly once.
    pub fn new(inner: WasiBody, finish: F) -> Self {
        ResponseBody {
            inner,
            sent: 0,
            finish: Some(finish),
        }
    }

    /// A complete body held in memory.
    pub fn full(bytes: impl Into<Bytes>, finish: F) -> Self {
        let body = http_body_util::Full::new(bytes.into())
            .map_err(|never| match never {})
            .boxed_unsync();
        Self::new(body, finish)
    }

    fn done(&mut self, ending: Option<Failure>) {
        if let Some(finish) = self.finish.take() {
            finish.finish(self.sent, ending);
        }
    }
}

impl<F: Finish + Unpin> Body for ResponseBody<F> {
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> PolledFrame {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.sent += data.len() as u64;
                }
            }
            Poll::Ready(Some(Err(error))) => {
                this.done(Some(Failure::ResponseFailed(error.to_string())))
            }
            Poll::Ready(None) => {
                if let Some(failure) = this.finish.as_ref().and_then(Finish::cut_short) {
                    // Abort the connection rather than send a truncated body
                    // as if it were whole.
                    let reason = failure.to_string();
                    this.done(Some(failure));
                    return Poll::Ready(Some(Err(wasmtime_wasi_http::Error::InternalError(Some(
                        reason,
                    )))));
                }
                this.done(None);
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<F: Finish> Drop for ResponseBody<F> {
    fn drop(&mut self) {
        let Some(finish) = &self.finish else {
            return;
        };
        // hyper stops polling a body that says it has ended (empty bodies,
        // the last frame of a full body) and never polls one it may not send:
        // both are complete responses.
        let ending = if self.inner.is_end_stream() || !finish.has_body() {
            finish.cut_short()
        } else {
            Some(Failure::ClientGone(ClientGone::BeforeEnd))
        };
        self.done(ending);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use http_body_util::{BodyExt, Full, StreamBody};

    use super::*;

    /// Bytes sent and the failure text, per finish.
    type Finishes = Arc<Mutex<Vec<(u64, Option<String>)>>>;

    /// Remembers how it was finished.
    #[derive(Clone, Default)]
    struct Probe {
        finished: Finishes,
        no_body: bool,
    }

    impl Finish for Probe {
        fn finish(self, sent: u64, ending: Option<Failure>) {
            self.finished
                .lock()
                .unwrap()
                .push((sent, ending.map(|f| f.to_string())));
        }

        fn has_body(&self) -> bool {
            !self.no_body
        }
    }

    fn body(chunks: &[&'static str]) -> WasiBody {
        let frames = chunks
            .iter()
            .map(|c| {
                Ok::<_, wasmtime_wasi_http::Error>(Frame::data(Bytes::from_static(c.as_bytes())))
            })
            .collect::<Vec<_>>();
        StreamBody::new(futures::stream::iter(frames)).boxed_unsync()
    }

    #[tokio::test]
    async fn a_body_read_to_its_end_finishes_once_with_its_size() {
        let probe = Probe::default();
        let mut response = ResponseBody::new(body(&["hello ", "world"]), probe.clone());
        let bytes = (&mut response).collect().await.unwrap().to_bytes();
        assert_eq!(bytes, "hello world");
        drop(response);
        assert_eq!(*probe.finished.lock().unwrap(), [(11, None)]);
    }

    #[tokio::test]
    async fn a_body_dropped_half_read_is_a_client_that_left() {
        let probe = Probe::default();
        let mut response = ResponseBody::new(body(&["a", "b"]), probe.clone());
        let _ = response.frame().await;
        drop(response);
        let finished = probe.finished.lock().unwrap().clone();
        assert_eq!(finished.len(), 1);
        assert_eq!(finished[0].0, 1);
        assert!(
            finished[0]
                .1
                .as_deref()
                .unwrap()
                .contains("client went away")
        );
    }

    #[tokio::test]
    async fn a_body_that_may_not_be_sent_is_complete_when_dropped_unread() {
        let probe = Probe {
            no_body: true,
            ..Probe::default()
        };
        drop(ResponseBody::new(body(&["never sent"]), probe.clone()));
        assert_eq!(*probe.finished.lock().unwrap(), [(0, None)]);
    }

    #[tokio::test]
    async fn a_full_body_dropped_after_its_last_frame_is_complete() {
        let probe = Probe::default();
        let mut response = ResponseBody::full("done", probe.clone());
        let _ = response.frame().await;
        assert!(response.is_end_stream());
        drop(response);
        assert_eq!(*probe.finished.lock().unwrap(), [(4, None)]);
    }

    const TIMING: BodyTiming = BodyTiming {
        timeout: Duration::from_secs(10),
        min_rate: 100,
    };

    #[tokio::test]
    async fn the_request_body_counts_and_refuses_past_the_limit() {
        let counted = Arc::new(BytesRead::default());
        let inner = Full::new(Bytes::from_static(b"0123456789"))
            .map_err(|never| -> wasmtime_wasi_http::Error { match never {} });
        let mut limited = RequestBody::new(inner, 4, TIMING, counted.clone());
        let error = limited.frame().await.unwrap().unwrap_err();
        assert!(matches!(
            error,
            wasmtime_wasi_http::Error::HttpRequestBodySize(Some(10))
        ));
        assert_eq!(counted.get(), 10);

        let counted = Arc::new(BytesRead::default());
        let inner = Full::new(Bytes::from_static(b"0123"))
            .map_err(|never| -> wasmtime_wasi_http::Error { match never {} });
        let whole = RequestBody::new(inner, 4, TIMING, counted.clone())
            .collect()
            .await
            .unwrap()
            .to_bytes();
        assert_eq!((whole.len(), counted.get()), (4, 4));
    }

    /// A body fed by hand: each item is a chunk, sent when the test says.
    fn trickle() -> (
        tokio::sync::mpsc::Sender<Bytes>,
        impl Body<Data = Bytes, Error = wasmtime_wasi_http::Error> + Unpin,
    ) {
        let (send, receive) = tokio::sync::mpsc::channel::<Bytes>(16);
        let stream = futures::stream::unfold(receive, |mut receive| async move {
            let chunk = receive.recv().await?;
            Some((
                Ok::<_, wasmtime_wasi_http::Error>(Frame::data(chunk)),
                receive,
            ))
        });
        (send, StreamBody::new(Box::pin(stream)))
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_slower_than_the_minimum_rate_runs_out_of_time() {
        let (send, inner) = trickle();
        let counted = Arc::new(BytesRead::default());
        let mut body = RequestBody::new(inner, 1 << 20, TIMING, counted.clone());
        let started = Instant::now();
        let feeding = tokio::spawn(async move {
            // 100 bytes a second earn a second each: 50 a second fall behind.
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                if send.send(Bytes::from(vec![b'x'; 50])).await.is_err() {
                    break;
                }
            }
        });
        let error = body.read_ahead(64 * 1024).await.unwrap_err();
        assert!(matches!(error, BodyFailure::TimedOut), "{error:?}");
        // Ten seconds, plus half a second per second of 50 bytes: 20 s.
        let took = started.elapsed();
        assert!(
            (Duration::from_secs(19)..=Duration::from_secs(21)).contains(&took),
            "{took:?}"
        );
        assert!(counted.timed_out());
        assert!((850..=1050).contains(&counted.get()), "{}", counted.get());
        feeding.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_at_the_minimum_rate_is_read_however_long() {
        let (send, inner) = trickle();
        let mut body = RequestBody::new(inner, 1 << 20, TIMING, Arc::default());
        tokio::spawn(async move {
            for _ in 0..60 {
                tokio::time::sleep(Duration::from_secs(1)).await;
                send.send(Bytes::from(vec![b'x'; 100])).await.unwrap();
            }
        });
        body.read_ahead(6000).await.unwrap();
        let read = body.collect().await.unwrap().to_bytes();
        assert_eq!(read.len(), 6000);
    }

    #[tokio::test]
    async fn a_body_read_ahead_is_handed_out_whole_then_the_rest_streams() {
        let (send, inner) = trickle();
        let counted = Arc::new(BytesRead::default());
        let mut body = RequestBody::new(inner, 100, TIMING, counted.clone());
        for chunk in ["abc", "def", "ghi"] {
            send.send(Bytes::from_static(chunk.as_bytes()))
                .await
                .unwrap();
        }
        body.read_ahead(5).await.unwrap();
        assert_eq!(body.size_hint().lower(), 6, "what is ahead counts");
        assert_eq!(
            body.frame().await.unwrap().unwrap().into_data().unwrap(),
            "abcdef"
        );
        assert_eq!(
            body.frame().await.unwrap().unwrap().into_data().unwrap(),
            "ghi"
        );
        drop(send);
        assert!(body.frame().await.is_none());
        assert!(body.is_end_stream());
        assert_eq!(counted.get(), 9);
    }
}
