//! One keep-alive HTTP/1.1 client connection, reopened when the server closes
//! it; optionally it names its own address in a request header, as a proxy in
//! front of the server would.

use std::net::SocketAddr;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// A keep-alive HTTP/1.1 connection that reconnects when the server closes it.
pub struct Connection {
    addr: SocketAddr,
    sender: Option<SendRequest<Full<Bytes>>>,
    /// The header that carries this connection's local address, if any.
    client_addr_header: Option<HeaderName>,
    /// Its value for the current connection, `ip:port`.
    client_addr: Option<HeaderValue>,
}

impl Connection {
    /// A connection to `addr`, opened on first use. With `client_addr_header`,
    /// every request carries the connection's local address in that header.
    pub fn new(addr: SocketAddr, client_addr_header: Option<HeaderName>) -> Self {
        Connection {
            addr,
            sender: None,
            client_addr_header,
            client_addr: None,
        }
    }

    /// Forgets the connection, so the next request opens a new one.
    pub fn reset(&mut self) {
        self.sender = None;
    }

    /// Sends one request and reads the whole answer.
    pub async fn exchange(
        &mut self,
        mut request: Request<Full<Bytes>>,
    ) -> anyhow::Result<(StatusCode, Bytes)> {
        if let Some(sender) = &mut self.sender
            && sender.ready().await.is_err()
        {
            // The server closed the connection after its last answer.
            self.sender = None;
        }
        if self.sender.is_none() {
            self.connect().await?;
        }
        if let (Some(name), Some(value)) = (&self.client_addr_header, &self.client_addr) {
            request.headers_mut().insert(name.clone(), value.clone());
        }
        let sender = self.sender.as_mut().expect("connected above");
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

    async fn connect(&mut self) -> anyhow::Result<()> {
        let stream = TcpStream::connect(self.addr)
            .await
            .with_context(|| format!("connecting to {}", self.addr))?;
        stream.set_nodelay(true)?;
        if self.client_addr_header.is_some() {
            self.client_addr = Some(HeaderValue::try_from(stream.local_addr()?.to_string())?);
        }
        let (sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        self.sender = Some(sender);
        Ok(())
    }
}
