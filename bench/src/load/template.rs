//! The request every connection of a run sends, prepared once so that building
//! the next one costs little next to a 100k req/s server.

use std::net::SocketAddr;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::{Method, Request, Uri};

/// What every request of a run shares.
#[derive(Debug, Clone)]
pub struct Template {
    method: Method,
    path: String,
    /// The parsed path, when it has no `{id}`.
    uri: Option<Uri>,
    host: HeaderValue,
    /// Sent with every request, after the standard ones.
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Option<String>,
    /// The body, when it has no `{n}`.
    fixed_body: Option<Bytes>,
}

impl Template {
    /// Requests of `method` for `path` (`{id}` replaced per request) to
    /// `addr`, with `body` (`{n}` replaced by a counter) and `headers`.
    pub fn new(
        method: &Method,
        addr: SocketAddr,
        path: &str,
        body: Option<&str>,
        headers: Vec<(HeaderName, HeaderValue)>,
    ) -> Self {
        Template {
            method: method.clone(),
            path: path.to_owned(),
            uri: (!path.contains("{id}"))
                .then(|| path.parse().ok())
                .flatten(),
            host: HeaderValue::try_from(addr.to_string())
                .expect("a socket address is a valid header value"),
            headers,
            body: body.map(str::to_owned),
            fixed_body: body
                .filter(|b| !b.contains("{n}"))
                .map(|b| Bytes::copy_from_slice(b.as_bytes())),
        }
    }

    /// The `n`-th request, with `id` in place of `{id}`.
    pub fn build(&self, id: Option<&str>, n: u64) -> Request<Full<Bytes>> {
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
        for (name, value) in &self.headers {
            headers.insert(name.clone(), value.clone());
        }
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

/// A header given as `name: value` (the value may be empty).
pub fn parse_header(text: &str) -> anyhow::Result<(HeaderName, HeaderValue)> {
    let (name, value) = text
        .split_once(':')
        .with_context(|| format!("{text:?} is not `name: value`"))?;
    Ok((
        HeaderName::try_from(name.trim()).with_context(|| format!("header name in {text:?}"))?,
        HeaderValue::try_from(value.trim()).with_context(|| format!("header value in {text:?}"))?,
    ))
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;

    #[test]
    fn request_substitutes_id_and_counter() {
        let addr: SocketAddr = ([127, 0, 0, 1], 1).into();
        let template = Template::new(
            &Method::POST,
            addr,
            "/heroes/{id}",
            Some(r#"{"name":"Hero {n}"}"#),
            Vec::new(),
        );
        let request = template.build(Some("01ABC"), 7);
        assert_eq!(request.uri(), "/heroes/01ABC");
        assert_eq!(request.headers()[header::HOST], "127.0.0.1:1");
        assert_eq!(request.headers()[header::CONTENT_TYPE], "application/json");
        assert_eq!(request.method(), Method::POST);
        assert_eq!(body(request), r#"{"name":"Hero 7"}"#);
    }

    #[test]
    fn every_request_carries_the_extra_headers() {
        let addr: SocketAddr = ([127, 0, 0, 1], 1).into();
        let headers = vec![
            parse_header("spin-path-info: /").unwrap(),
            parse_header("spin-component-route:").unwrap(),
        ];
        let template = Template::new(&Method::GET, addr, "/", None, headers);
        for n in 0..2 {
            let request = template.build(None, n);
            assert_eq!(request.headers()["spin-path-info"], "/");
            assert_eq!(request.headers()["spin-component-route"], "");
            assert_eq!(request.headers().len(), 4, "{:?}", request.headers());
        }
    }

    #[test]
    fn headers_parse_from_name_colon_value() {
        let (name, value) = parse_header("Spin-Full-URL: http://127.0.0.1:1/").unwrap();
        assert_eq!(
            (name.as_str(), value.to_str().unwrap()),
            ("spin-full-url", "http://127.0.0.1:1/")
        );
        assert!(parse_header("no colon").is_err());
        assert!(parse_header("bad name: x").is_err());
    }

    fn body(request: Request<Full<Bytes>>) -> String {
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
