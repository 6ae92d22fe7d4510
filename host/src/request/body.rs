//! Body wrappers: the request body counts what the guest reads and refuses
//! more than the limit; the response body counts what is sent and finishes
//! the request exactly once (end, error, or dropped because the client went
//! away).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use wasmtime_wasi_http::WasiBody;

use super::outcome::{ClientGone, Failure};

/// Bytes a request body has read (past the limit when the body was larger
/// than it).
#[derive(Default)]
pub struct BytesRead(AtomicU64);

impl BytesRead {
    /// Bytes read so far.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// The request body as the guest reads it.
pub struct RequestBody<B = hyper::body::Incoming> {
    inner: B,
    limit: u64,
    read: u64,
    counted: Arc<BytesRead>,
}

impl<B> RequestBody<B> {
    /// Wraps `inner`, allowing at most `limit` bytes, counting into `counted`.
    pub fn new(inner: B, limit: u64, counted: Arc<BytesRead>) -> Self {
        RequestBody {
            inner,
            limit,
            read: 0,
            counted,
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

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        let too_large = |read| wasmtime_wasi_http::Error::HttpRequestBodySize(Some(read));
        if this.read > this.limit {
            return Poll::Ready(Some(Err(too_large(this.read))));
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.read += data.len() as u64;
                    this.counted.0.store(this.read, Ordering::Relaxed);
                    if this.read > this.limit {
                        return Poll::Ready(Some(Err(too_large(this.read))));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) => Poll::Ready(Some(Err(error.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
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

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
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

    #[tokio::test]
    async fn the_request_body_counts_and_refuses_past_the_limit() {
        let counted = Arc::new(BytesRead::default());
        let inner = Full::new(Bytes::from_static(b"0123456789"))
            .map_err(|never| -> wasmtime_wasi_http::Error { match never {} });
        let mut limited = RequestBody::new(inner, 4, counted.clone());
        let error = limited.frame().await.unwrap().unwrap_err();
        assert!(matches!(
            error,
            wasmtime_wasi_http::Error::HttpRequestBodySize(Some(10))
        ));
        assert_eq!(counted.get(), 10);

        let counted = Arc::new(BytesRead::default());
        let inner = Full::new(Bytes::from_static(b"0123"))
            .map_err(|never| -> wasmtime_wasi_http::Error { match never {} });
        let whole = RequestBody::new(inner, 4, counted.clone())
            .collect()
            .await
            .unwrap()
            .to_bytes();
        assert_eq!((whole.len(), counted.get()), (4, 4));
    }
}
