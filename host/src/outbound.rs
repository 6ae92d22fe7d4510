//! `allowed_outbound_hosts`: which `scheme://host:port` a guest may send HTTP
//! requests to, in Spin's syntax (`https://api.example.com`,
//! `http://localhost:8080`, `https://*.example.com`, `*://*:*`).

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
        ensure!(host != "self", "service chaining (`self`) is not supported");
        let host = match host {
            "*" => HostPattern::Any,
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
        assert!(error("http://self").contains("self"));
        assert!(error("http://x:port").contains("invalid port"));
        assert!(error("http://a*b.com").contains("wildcard"));
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
