//! The `spin-*` request headers Spin gives a component, computed as Spin's
//! HTTP trigger computes them.
//!
//! What depends only on the route (`spin-matched-route`,
//! `spin-component-route`, `spin-raw-component-route`, the names of the
//! `spin-path-match-*` headers) is made once per route, by
//! [`RouteHeaders::for_route`]; [`insert`] adds the per-request values. With
//! the application base fixed at `/`:
//!
//! | header | value |
//! |---|---|
//! | `spin-full-url` | `http://<Host header or localhost><path and query>` |
//! | `spin-path-info` | the path under a trailing `/...`, with the request's trailing slash |
//! | `spin-matched-route` | the route without one trailing slash (`/` gives the empty string), `/...` kept |
//! | `spin-base-path` | `/` |
//! | `spin-raw-component-route` | the route as written |
//! | `spin-component-route` | the route as written, without a trailing `/...` |
//! | `spin-client-addr` | the peer, `ip:port` |
//! | `spin-path-match-<name>` | the value of the `:name` segment; `_` in the name becomes `-` |

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue, InvalidHeaderName, InvalidHeaderValue};

/// The per-route values, made once.
#[derive(Debug, Clone)]
pub struct RouteHeaders {
    matched_route: HeaderValue,
    component_route: HeaderValue,
    raw_route: HeaderValue,
    /// `:name` segments and the header each is sent in.
    params: Vec<(Box<str>, HeaderName)>,
}

/// A route that cannot be sent in headers.
#[derive(Debug, thiserror::Error)]
pub enum InvalidRoute {
    /// The route has bytes a header value cannot hold.
    #[error("the route cannot be a header value: {0}")]
    Value(#[from] InvalidHeaderValue),
    /// A `:name` segment's name cannot be in a header name.
    #[error("the parameter name cannot be in a header name: {0}")]
    ParamName(#[from] InvalidHeaderName),
}

impl RouteHeaders {
    /// The header values of `route`, as written in the manifest (`/heroes/:id`,
    /// `/static/...`, `/`).
    pub fn for_route(route: &str) -> Result<Self, InvalidRoute> {
        let matched = route.strip_suffix('/').unwrap_or(route);
        let component = route.strip_suffix("/...").unwrap_or(route);
        let params = route
            .split('/')
            .filter_map(|segment| segment.strip_prefix(':'))
            .map(|name| {
                let header = format!(
                    "spin-path-match-{}",
                    name.replace('_', "-").to_ascii_lowercase()
                );
                Ok((name.into(), HeaderName::try_from(header)?))
            })
            .collect::<Result<_, InvalidHeaderName>>()?;
        Ok(RouteHeaders {
            matched_route: HeaderValue::try_from(matched)?,
            component_route: HeaderValue::try_from(component)?,
            raw_route: HeaderValue::try_from(route)?,
            params,
        })
    }
}

// The names, checked once at compile time rather than on every request.
const FULL_URL: HeaderName = HeaderName::from_static("spin-full-url");
const PATH_INFO: HeaderName = HeaderName::from_static("spin-path-info");
const MATCHED_ROUTE: HeaderName = HeaderName::from_static("spin-matched-route");
const BASE_PATH: HeaderName = HeaderName::from_static("spin-base-path");
const RAW_COMPONENT_ROUTE: HeaderName = HeaderName::from_static("spin-raw-component-route");
const COMPONENT_ROUTE: HeaderName = HeaderName::from_static("spin-component-route");
const CLIENT_ADDR: HeaderName = HeaderName::from_static("spin-client-addr");
/// Spin serves every app at the root.
const ROOT_BASE_PATH: HeaderValue = HeaderValue::from_static("/");

/// What one request adds to its route's values.
pub struct RequestValues<'a> {
    /// The full URL, also the guest's request URI (see [`full_url`]).
    pub full_url: Bytes,
    /// The part of the path under a trailing wildcard.
    pub path_info: &'a str,
    /// `:name` segments and their values.
    pub params: &'a [(&'a str, &'a str)],
    /// The peer as a header value (made once per connection), if known.
    pub client_addr: Option<&'a HeaderValue>,
}

/// `http://<host><path and query>`.
pub fn full_url(host: &str, path_and_query: &str) -> Bytes {
    let mut url = String::with_capacity(7 + host.len() + path_and_query.len());
    url.push_str("http://");
    url.push_str(host);
    url.push_str(path_and_query);
    Bytes::from(url)
}

/// Sets every `spin-*` header of a request on `headers`, replacing any the
/// client sent.
pub fn insert(
    headers: &mut HeaderMap,
    route: &RouteHeaders,
    request: &RequestValues<'_>,
) -> Result<(), InvalidHeaderValue> {
    headers.insert(
        FULL_URL,
        HeaderValue::from_maybe_shared(request.full_url.clone())?,
    );
    headers.insert(PATH_INFO, HeaderValue::from_str(request.path_info)?);
    headers.insert(MATCHED_ROUTE, route.matched_route.clone());
    headers.insert(BASE_PATH, ROOT_BASE_PATH);
    headers.insert(RAW_COMPONENT_ROUTE, route.raw_route.clone());
    headers.insert(COMPONENT_ROUTE, route.component_route.clone());
    match request.client_addr {
        Some(client) => headers.insert(CLIENT_ADDR, client.clone()),
        None => headers.remove(CLIENT_ADDR),
    };
    for (name, value) in request.params {
        if let Some((_, header)) = route.params.iter().find(|(param, _)| &**param == *name) {
            headers.insert(header.clone(), HeaderValue::from_str(value)?);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One request on one route, and every `spin-*` header it must get.
    struct Case {
        route: &'static str,
        host: &'static str,
        path_and_query: &'static str,
        path_info: &'static str,
        params: &'static [(&'static str, &'static str)],
        expected: &'static [(&'static str, &'static str)],
    }

    const CASES: &[Case] = &[
        // Spin's own case: a trailing wildcard.
        Case {
            route: "/foo/...",
            host: "fermyon.dev",
            path_and_query: "/foo/bar?key1=value1&key2=value2",
            path_info: "/bar",
            params: &[],
            expected: &[
                (
                    "spin-full-url",
                    "http://fermyon.dev/foo/bar?key1=value1&key2=value2",
                ),
                ("spin-path-info", "/bar"),
                ("spin-matched-route", "/foo/..."),
                ("spin-base-path", "/"),
                ("spin-raw-component-route", "/foo/..."),
                ("spin-component-route", "/foo"),
                ("spin-client-addr", "127.0.0.1:8777"),
            ],
        },
        // Spin's own case: a named segment before the wildcard.
        Case {
            route: "/foo/:userid/...",
            host: "fermyon.dev",
            path_and_query: "/foo/42/bar?key1=value1&key2=value2",
            path_info: "/bar",
            params: &[("userid", "42")],
            expected: &[
                (
                    "spin-full-url",
                    "http://fermyon.dev/foo/42/bar?key1=value1&key2=value2",
                ),
                ("spin-path-info", "/bar"),
                ("spin-matched-route", "/foo/:userid/..."),
                ("spin-base-path", "/"),
                ("spin-raw-component-route", "/foo/:userid/..."),
                ("spin-component-route", "/foo/:userid"),
                ("spin-client-addr", "127.0.0.1:8777"),
                ("spin-path-match-userid", "42"),
            ],
        },
        // The root route: Spin strips its slash from the matched route only.
        Case {
            route: "/",
            host: "localhost",
            path_and_query: "/",
            path_info: "",
            params: &[],
            expected: &[
                ("spin-full-url", "http://localhost/"),
                ("spin-path-info", ""),
                ("spin-matched-route", ""),
                ("spin-raw-component-route", "/"),
                ("spin-component-route", "/"),
            ],
        },
        // The catch-all: the component route is the empty prefix.
        Case {
            route: "/...",
            host: "example.com:8080",
            path_and_query: "/a/b/",
            path_info: "/a/b/",
            params: &[],
            expected: &[
                ("spin-full-url", "http://example.com:8080/a/b/"),
                ("spin-path-info", "/a/b/"),
                ("spin-matched-route", "/..."),
                ("spin-raw-component-route", "/..."),
                ("spin-component-route", ""),
            ],
        },
        // An exact route with a trailing slash, and a parameter whose name has
        // an underscore.
        Case {
            route: "/users/:user_id/",
            host: "localhost",
            path_and_query: "/users/7/?x",
            path_info: "",
            params: &[("user_id", "7")],
            expected: &[
                ("spin-matched-route", "/users/:user_id"),
                ("spin-raw-component-route", "/users/:user_id/"),
                ("spin-component-route", "/users/:user_id/"),
                ("spin-path-match-user-id", "7"),
            ],
        },
    ];

    #[test]
    fn headers_are_spins_for_every_case() {
        let client = HeaderValue::from_static("127.0.0.1:8777");
        for case in CASES {
            let route = RouteHeaders::for_route(case.route).unwrap();
            let mut headers = HeaderMap::new();
            // A client cannot forge a header the host sets.
            headers.insert("spin-matched-route", HeaderValue::from_static("/forged"));
            insert(
                &mut headers,
                &route,
                &RequestValues {
                    full_url: full_url(case.host, case.path_and_query),
                    path_info: case.path_info,
                    params: case.params,
                    client_addr: Some(&client),
                },
            )
            .unwrap();
            for (name, value) in case.expected {
                let got: Vec<_> = headers.get_all(*name).iter().collect();
                assert_eq!(got, [*value], "{name} for route {}", case.route);
            }
            let spin_headers = headers
                .keys()
                .filter(|name| name.as_str().starts_with("spin-"))
                .count();
            assert_eq!(spin_headers, 7 + case.params.len(), "route {}", case.route);
        }
    }

    #[test]
    fn without_a_peer_no_client_header_is_sent() {
        let route = RouteHeaders::for_route("/").unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("spin-client-addr", HeaderValue::from_static("10.0.0.1:1"));
        let request = RequestValues {
            full_url: full_url("localhost", "/"),
            path_info: "",
            params: &[],
            client_addr: None,
        };
        insert(&mut headers, &route, &request).unwrap();
        assert!(headers.get("spin-client-addr").is_none());
    }

    #[test]
    fn routes_that_cannot_be_headers_are_refused() {
        assert!(matches!(
            RouteHeaders::for_route("/a/:b c"),
            Err(InvalidRoute::ParamName(_))
        ));
        assert!(matches!(
            RouteHeaders::for_route("/a\u{7f}"),
            Err(InvalidRoute::Value(_))
        ));
    }
}
