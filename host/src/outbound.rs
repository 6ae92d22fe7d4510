//! `allowed_outbound_hosts`: which `scheme://host:port` a guest may send HTTP
//! requests to, in Spin's syntax (`https://api.example.com`,
//! `http://localhost:8080`, `https://*.example.com`, `*://*:*`), and
//! `http://self`, which lets a component call its own app with a URL that
//! has no host (`/path`), as in Spin, or the host `self` (`http://self/path`,
//! the form wasi:http 0.3 guests need: it refuses a URL without a host).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, OnceLock};

use anyhow::{Context, bail, ensure};

/// One allowed destination pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundRule {
    /// `None` matches any scheme.
    scheme: Option<String>,
    host: HostPattern,
    /// `None` matches any port.
    port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    Any,
    Exact(String),
    /// `*.example.com`: any subdomain of `example.com`, not the domain itself.
    SubdomainOf(String),
    /// `self`: the app itself, for requests whose URL has no host.
    OwnApp,
}

impl OutboundRule {
    /// Parses one `allowed_outbound_hosts` entry.
    pub fn parse(rule: &str) -> anyhow::Result<Self> {
        ensure!(
            !rule.contains("{{"),
            "templated entries (`{{{{ variable }}}}`) are not supported"
        );
        let (scheme, rest) = rule
            .split_once("://")
            .context("expected scheme://host[:port], e.g. https://api.example.com")?;
        let scheme = match scheme {
            "*" => None,
            "http" | "https" => Some(scheme.to_owned()),
            other => bail!("scheme {other:?} is not supported: use http, https or *"),
        };
        ensure!(
            !rest.contains('/'),
            "a path is not allowed here: give only scheme://host[:port]"
        );
        let (host, port) = match rest.rsplit_once(':') {
            // An IPv6 literal is bracketed; its colons are not a port separator.
            Some((host, port)) if !port.contains(']') => (host, Some(port)),
            _ => (rest, None),
        };
        ensure!(!host.is_empty(), "missing host");
        let host = match host {
            "*" => HostPattern::Any,
            "self" => HostPattern::OwnApp,
            _ => match host.strip_prefix("*.") {
                Some(domain) => HostPattern::SubdomainOf(domain.to_ascii_lowercase()),
                None => {
                    ensure!(
                        !host.contains('*'),
                        "a wildcard is allowed only as `*` or `*.domain`"
                    );
                    HostPattern::Exact(host.to_ascii_lowercase())
                }
            },
        };
        let port = match (port, scheme.as_deref()) {
            (Some("*"), _) => None,
            (Some(port), _) => Some(
                port.parse()
                    .with_context(|| format!("invalid port {port:?}"))?,
            ),
            (None, Some(scheme)) => Some(default_port(scheme)),
            (None, None) => bail!("a port (or `*`) is required when the scheme is `*`"),
        };
        Ok(OutboundRule { scheme, host, port })
    }

    /// Whether a request to `scheme://host:port` is allowed by this rule.
    pub fn allows(&self, scheme: &str, host: &str, port: u16) -> bool {
        let scheme_ok = self
            .scheme
            .as_deref()
            .is_none_or(|s| s.eq_ignore_ascii_case(scheme));
        let port_ok = self.port.is_none_or(|p| p == port);
        let host = host.to_ascii_lowercase();
        let host_ok = match &self.host {
            HostPattern::Any => true,
            HostPattern::Exact(exact) => *exact == host,
            HostPattern::SubdomainOf(domain) => host
                .strip_suffix(domain.as_str())
                .is_some_and(|prefix| prefix.len() > 1 && prefix.ends_with('.')),
            // Requests to the app itself have no host; see `allows_own_app`.
            HostPattern::OwnApp => false,
        };
        scheme_ok && host_ok && port_ok
    }
}

/// The port a scheme uses when none is given.
pub fn default_port(scheme: &str) -> u16 {
    if scheme.eq_ignore_ascii_case("https") {
        443
    } else {
        80
    }
}

/// Whether any rule allows the destination.
pub fn is_allowed(rules: &[OutboundRule], scheme: &str, host: &str, port: u16) -> bool {
    rules.iter().any(|rule| rule.allows(scheme, host, port))
}

/// Whether a rule allows requests to the app itself (`http://self`).
pub fn allows_own_app(rules: &[OutboundRule]) -> bool {
    rules
        .iter()
        .any(|rule| rule.host == HostPattern::OwnApp && rule.scheme.as_deref() != Some("https"))
}

/// Where the app itself listens, for requests whose URL has no host: known
/// once the public listener is bound (after the components are loaded).
/// Such requests go to that listener over loopback, as `spin up` sends them
/// to its own origin, and are served and logged like any other request.
#[derive(Clone, Default)]
pub struct OwnApp(Arc<OnceLock<http::uri::Authority>>);

impl OwnApp {
    /// The app listens on `addr`; an unspecified address is reached on
    /// loopback.
    pub fn listening_on(&self, addr: SocketAddr) {
        let ip = match addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        let authority = SocketAddr::new(ip, addr.port()).to_string();
        if let Ok(authority) = authority.parse() {
            let _ = self.0.set(authority);
        }
    }

    /// `uri` (with no host, or `self`) made absolute on the app's own listener;
    /// `None` before the listener is bound.
    pub fn absolute(&self, uri: &http::Uri) -> Option<http::Uri> {
        let authority = self.0.get()?.clone();
        let path = uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
        http::Uri::builder()
            .scheme(http::uri::Scheme::HTTP)
            .authority(authority)
            .path_and_query(path)
            .build()
            .ok()
    }
}

/// Where an outbound request to `uri` may go: `Ok(None)` to `uri` itself
/// when a rule allows it; `Ok(Some(..))` to the app's own listener for a URL
/// with no host or with the host `self` (wasi:http 0.3 refuses a URL without
/// a host before the host sees it) when `http://self` is allowed; else why
/// not, for the log.
pub fn destination(
    rules: &[OutboundRule],
    own_app: &OwnApp,
    uri: &http::Uri,
) -> Result<Option<http::Uri>, String> {
    if uri.authority().is_none() || uri.host() == Some("self") {
        if !allows_own_app(rules) {
            return Err(format!(
                "{uri}: a URL without a host calls the app itself, which needs \
                 `http://self` in allowed_outbound_hosts"
            ));
        }
        return own_app
            .absolute(uri)
            .map(Some)
            .ok_or_else(|| format!("{uri}: the app is not listening yet"));
    }
    let scheme = uri.scheme_str().unwrap_or("http");
    let host = uri.host().unwrap_or("");
    let port = uri.port_u16().unwrap_or_else(|| default_port(scheme));
    if is_allowed(rules, scheme, host, port) {
        Ok(None)
    } else {
        Err(format!("{scheme}://{host}:{port}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allows(rule: &str, scheme: &str, host: &str, port: u16) -> bool {
        OutboundRule::parse(rule)
            .unwrap()
            .allows(scheme, host, port)
    }

    #[test]
    fn exact_host_uses_the_scheme_default_port() {
        assert!(allows(
            "https://api.example.com",
            "https",
            "api.example.com",
            443
        ));
        assert!(allows(
            "https://api.example.com",
            "https",
            "API.example.com",
            443
        ));
        assert!(!allows(
            "https://api.example.com",
            "https",
            "api.example.com",
            8443
        ));
        assert!(!allows(
            "https://api.example.com",
            "http",
            "api.example.com",
            443
        ));
        assert!(!allows("https://api.example.com", "https", "evil.com", 443));
        assert!(allows("http://localhost:8080", "http", "localhost", 8080));
    }

    #[test]
    fn wildcards_cover_scheme_host_port_and_subdomains() {
        assert!(allows("*://*:*", "http", "anything", 1));
        assert!(allows("http://127.0.0.1:*", "http", "127.0.0.1", 4567));
        assert!(allows(
            "https://*.example.com",
            "https",
            "a.b.example.com",
            443
        ));
        assert!(!allows(
            "https://*.example.com",
            "https",
            "example.com",
            443
        ));
        assert!(!allows(
            "https://*.example.com",
            "https",
            "badexample.com",
            443
        ));
    }

    #[test]
    fn rejects_malformed_rules_clearly() {
        let error = |rule: &str| format!("{:#}", OutboundRule::parse(rule).unwrap_err());
        assert!(error("example.com").contains("scheme://host"));
        assert!(error("ftp://x").contains("ftp"));
        assert!(error("*://example.com").contains("port"));
        assert!(error("https://example.com/path").contains("path"));
        assert!(error("https://{{ host }}").contains("templated"));
        assert!(error("http://x:port").contains("invalid port"));
        assert!(error("http://a*b.com").contains("wildcard"));
    }

    #[test]
    fn self_allows_the_app_itself_and_no_host() {
        let own = [OutboundRule::parse("http://self").unwrap()];
        assert!(allows_own_app(&own));
        assert!(!is_allowed(&own, "http", "self", 80));
        let others = [OutboundRule::parse("*://*:*").unwrap()];
        assert!(
            !allows_own_app(&others),
            "only `self` allows the app itself"
        );

        let app = OwnApp::default();
        let relative: http::Uri = "/count?x=1".parse().unwrap();
        assert_eq!(app.absolute(&relative), None, "not bound yet");
        app.listening_on("0.0.0.0:3000".parse().unwrap());
        assert_eq!(
            app.absolute(&relative).unwrap().to_string(),
            "http://127.0.0.1:3000/count?x=1"
        );
    }

    #[test]
    fn requests_without_a_host_or_to_self_go_to_the_app_when_allowed() {
        let uri = |text: &str| text.parse::<http::Uri>().unwrap();
        let rules = [
            OutboundRule::parse("http://self").unwrap(),
            OutboundRule::parse("https://api.example.com").unwrap(),
        ];
        let app = OwnApp::default();
        let early = destination(&rules, &app, &uri("/heroes")).unwrap_err();
        assert!(early.contains("not listening"), "{early}");
        app.listening_on("127.0.0.1:3000".parse().unwrap());
        for own in ["/heroes?limit=1", "http://self/heroes?limit=1"] {
            assert_eq!(
                destination(&rules, &app, &uri(own)),
                Ok(Some(uri("http://127.0.0.1:3000/heroes?limit=1"))),
                "{own}"
            );
        }
        assert_eq!(
            destination(&rules, &app, &uri("https://api.example.com/x")),
            Ok(None)
        );
        let denied = destination(&rules, &app, &uri("http://api.example.com/x")).unwrap_err();
        assert_eq!(denied, "http://api.example.com:80");

        let others = [OutboundRule::parse("*://*:*").unwrap()];
        let refused = destination(&others, &app, &uri("/heroes")).unwrap_err();
        assert!(refused.contains("http://self"), "{refused}");
        assert!(destination(&others, &app, &uri("http://self:8080/")).is_err());
    }

    #[test]
    fn any_rule_may_allow() {
        let rules = [
            OutboundRule::parse("https://a.com").unwrap(),
            OutboundRule::parse("http://b.com:81").unwrap(),
        ];
        assert!(is_allowed(&rules, "http", "b.com", 81));
        assert!(!is_allowed(&rules, "http", "a.com", 80));
        assert!(!is_allowed(&[], "http", "a.com", 80));
    }
}
