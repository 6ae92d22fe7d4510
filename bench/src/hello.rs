//! The ceiling: a bare hyper HTTP/1.1 server answering "Hello, world!\n" on
//! any path, with nothing between the socket and the answer.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response, body::Incoming, header};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// Serves until the process is killed. The runtime has one worker per core the
/// process may run on (so one, when pinned with `taskset`).
pub async fn serve(listen: SocketAddr) -> anyhow::Result<()> {
    let listener = TcpListener::bind(listen).await?;
    println!(
        "{{\"message\":\"serving\",\"address\":\"{}\"}}",
        listener.local_addr()?
    );
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        tokio::spawn(async move {
            let service = service_fn(|_request: Request<Incoming>| async {
                let mut response = Response::new(Full::new(Bytes::from_static(b"Hello, world!\n")));
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    header::HeaderValue::from_static("text/plain"),
                );
                Ok::<_, Infallible>(response)
            });
            // A client hanging up is not an error worth reporting here.
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
