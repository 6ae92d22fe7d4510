//! The request headers hero-host gives its guest beyond the client's, as the
//! like-for-like load sends them to `wasmtime serve`, so both guests copy in
//! the same headers.
//!
//! Values for `GET /` on the hello's catch-all route `/...`, as hero-host
//! computes them (its `request/spin_headers.rs`, whose table has this case):
//! the URL from the `Host` header the load generator sends, the whole path as
//! path info, the route as written and without its `/...`. `spin-client-addr`
//! is each connection's own address, stamped per connection by the load
//! generator ([`CLIENT_ADDR`]). `traceparent` is a fixed W3C value of the
//! length hero-host's are: the guest copies it, whatever its ids.

use std::net::SocketAddr;

/// The header carrying the client's address, set per connection.
pub const CLIENT_ADDR: &str = "spin-client-addr";

/// A valid `traceparent` (the W3C specification's example).
pub const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// The fixed headers of `GET /` on the route `/...` of a server at `listen`.
pub fn hello_headers(listen: SocketAddr) -> Vec<(&'static str, String)> {
    vec![
        ("spin-full-url", format!("http://{listen}/")),
        ("spin-path-info", "/".into()),
        ("spin-matched-route", "/...".into()),
        ("spin-base-path", "/".into()),
        ("spin-raw-component-route", "/...".into()),
        ("spin-component-route", String::new()),
        ("traceparent", TRACEPARENT.into()),
    ]
}

/// Arguments of `hero-bench load` that send `headers` and stamp
/// [`CLIENT_ADDR`] on every connection.
pub fn load_args(headers: &[(&str, String)]) -> Vec<String> {
    let mut args = Vec::with_capacity(2 * headers.len() + 2);
    for (name, value) in headers {
        args.push("--header".into());
        args.push(format!("{name}: {value}"));
    }
    args.push("--client-addr-header".into());
    args.push(CLIENT_ADDR.into());
    args
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::parse_header;

    #[test]
    fn the_like_for_like_load_sends_every_header_hero_host_adds() {
        let listen: SocketAddr = ([127, 0, 0, 1], 18080).into();
        let headers = hello_headers(listen);
        let mut names: Vec<&str> = headers.iter().map(|(name, _)| *name).collect();
        names.push(CLIENT_ADDR);
        names.sort_unstable();
        // hero-host's seven `spin-*` headers (no `:name` segments on this
        // route) and its `traceparent`.
        assert_eq!(
            names,
            [
                "spin-base-path",
                "spin-client-addr",
                "spin-component-route",
                "spin-full-url",
                "spin-matched-route",
                "spin-path-info",
                "spin-raw-component-route",
                "traceparent",
            ]
        );
        let value = |name| headers.iter().find(|(n, _)| *n == name).unwrap().1.as_str();
        assert_eq!(value("spin-full-url"), "http://127.0.0.1:18080/");
        assert_eq!(value("spin-component-route"), "");
        assert_eq!(value("traceparent").len(), 55);
    }

    #[test]
    fn the_load_arguments_parse_back_to_the_same_headers() {
        let listen: SocketAddr = ([127, 0, 0, 1], 18080).into();
        let headers = hello_headers(listen);
        let args = load_args(&headers);
        let parsed: Vec<(String, String)> = args
            .chunks(2)
            .filter(|pair| pair[0] == "--header")
            .map(|pair| {
                let (name, value) = parse_header(&pair[1]).unwrap();
                (name.to_string(), value.to_str().unwrap().to_owned())
            })
            .collect();
        let expected: Vec<(String, String)> = headers
            .iter()
            .map(|(name, value)| ((*name).to_owned(), value.clone()))
            .collect();
        assert_eq!(parsed, expected);
        assert_eq!(
            args[args.len() - 2..],
            ["--client-addr-header", CLIENT_ADDR]
        );
    }
}
