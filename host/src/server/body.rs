//! Body wrappers: the request body counts what the guest reads and refuses
//! more than the limit; the response body counts what is sent and finishes
//! the request's record exactly once (end, error, or dropped because the
//! client went away).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use wasmtime_wasi_http::WasiBody;

/// What a request body reported: bytes read (past the limit when the body
/// was larger than it).
#[derive(Default)]
pub struct RequestBodyStats {
    /// Bytes read so far.
    pub bytes: AtomicU64,
}

/// The request body as the guest reads it.
pub struct RequestBody {
    inner: hyper::body::Incoming,
    limit: u64,
    read: u64,
    stats: Arc<RequestBodyStats>,
}

impl RequestBody {
    /// Wraps `inner`, allowing at most `limit` bytes.
    pub fn new(inner: hyper::body::Incoming, limit: u64, stats: Arc<RequestBodyStats>) -> Self {
        RequestBody {
            inner,
            limit,
            read: 0,
            stats,
        }
    }

    /// As the body type wasi:http expects.
    pub fn boxed(self) -> WasiBody {
        self.boxed_unsync()
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if this.read > this.limit {
            return Poll::Ready(Some(Err(wasmtime_wasi_http::Error::HttpRequestBodySize(
                Some(this.read),
            ))));
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.read += data.len() as u64;
                    this.stats.bytes.store(this.read, Ordering::Relaxed);
                    if this.read > this.limit {
                        return Poll::Ready(Some(Err(
                            wasmtime_wasi_http::Error::HttpRequestBodySize(Some(this.read)),
                        )));
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

/// Why a response did not complete.
#[derive(Debug)]
pub enum Unfinished {
    /// The client went away (the text says when).
    ClientGone(&'static str),
    /// Sending failed, or the guest cut its response short.
    Failed(String),
    /// The host stopped and the shutdown grace period had elapsed.
    CutOff,
}

impl Unfinished {
    /// `error.type`: `client_closed`, `response_failed` or `shutdown`.
    pub fn error_type(&self) -> &'static str {
        match self {
            Unfinished::ClientGone(_) => "client_closed",
            Unfinished::Failed(_) => "response_failed",
            Unfinished::CutOff => "shutdown",
        }
    }

    /// The text for the log line.
    pub fn into_reason(self) -> String {
        match self {
            Unfinished::ClientGone(when) => when.to_owned(),
            Unfinished::Failed(reason) => reason,
            Unfinished::CutOff => "cut off at shutdown: the grace period elapsed".to_owned(),
        }
    }
}

/// Called once when a response has been sent, failed, or was abandoned.
pub trait Finish: Send + 'static {
    /// `sent`: body bytes written; `error`: why it did not complete.
    fn finish(self: Box<Self>, sent: u64, error: Option<Unfinished>);
    /// Whether a clean end of the body really means the guest finished it (a
    /// trapped instance ends its stream early, and that must read as an
    /// error, not as a complete response).
    fn cut_short(&self) -> Option<String> {
        None
    }
}

/// The response body hyper sends.
pub struct ResponseBody {
    inner: WasiBody,
    sent: u64,
    finish: Option<Box<dyn Finish>>,
}

impl ResponseBody {
    /// Wraps `inner`; `finish` runs exactly once.
    pub fn new(inner: WasiBody, finish: Box<dyn Finish>) -> Self {
        ResponseBody {
            inner,
            sent: 0,
            finish: Some(finish),
        }
    }

    /// A complete body held in memory.
    pub fn full(bytes: impl Into<Bytes>, finish: Box<dyn Finish>) -> Self {
        let body = http_body_util::Full::new(bytes.into())
            .map_err(|never| match never {})
            .boxed_unsync();
        Self::new(body, finish)
    }

    fn done(&mut self, error: Option<Unfinished>) {
        if let Some(finish) = self.finish.take() {
            finish.finish(self.sent, error);
        }
    }
}

impl Body for ResponseBody {
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
            Poll::Ready(Some(Err(error))) => this.done(Some(Unfinished::Failed(format!(
                "response body failed: {error}"
            )))),
            Poll::Ready(None) => {
                if let Some(reason) = this.finish.as_ref().and_then(|f| f.cut_short()) {
                    // Abort the connection rather than send a truncated
                    // body as if it were whole.
                    this.done(Some(Unfinished::Failed(reason.clone())));
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

impl Drop for ResponseBody {
    fn drop(&mut self) {
        if self.finish.is_none() {
            return;
        }
        // hyper stops polling a body that says it has ended (empty bodies,
        // HEAD, the last frame of a full body): that is a complete response.
        let error = if self.inner.is_end_stream() {
            self.finish
                .as_ref()
                .and_then(|f| f.cut_short())
                .map(Unfinished::Failed)
        } else {
            Some(Unfinished::ClientGone(
                "client went away before the response ended",
            ))
        };
        self.done(error);
    }
}
