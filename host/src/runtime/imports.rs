//! When a component imports something hero-host does not provide, which
//! import it is and which Spin feature it belongs to, so `up` can say so
//! instead of only wasmtime's "no matching implementation".
//!
//! The table is hero-host's own list of what its linker provides; it is
//! consulted only after the linker has refused the component, so an
//! incomplete table can never refuse a component the linker accepts.

use wasmtime::component::Component;

/// Interfaces the linker provides, as name prefixes (a version prefix
/// covers the semver-compatible versions wasmtime matches).
const PROVIDED: &[&str] = &[
    "wasi:cli/",
    "wasi:io/",
    "wasi:clocks/",
    "wasi:random/",
    "wasi:filesystem/",
    "wasi:sockets/",
    "wasi:http/",
    "spin:key-value/key-value@3.",
    "spin:variables/variables@3.",
    "spin:sqlite/sqlite@3.",
    "wasi:config/store@0.2.0-draft-2024-09-27",
    "wasi:keyvalue/store@0.2.0-draft2",
    "wasi:keyvalue/atomics@0.2.0-draft2",
    "wasi:keyvalue/batch@0.2.0-draft2",
    "wasi:otel/types@0.2.0-rc.2",
    "wasi:otel/tracing@0.2.0-rc.2",
    "wasi:otel/logs@0.2.0-rc.2",
    "wasi:otel/metrics@0.2.0-rc.2",
    "fermyon:spin/key-value@2.",
    "fermyon:spin/variables@2.",
    "fermyon:spin/sqlite@2.",
];

/// WASI versions wasmtime 48 links: 0.2.x and the 0.3.0 release.
fn wasi_version_provided(name: &str) -> bool {
    match name.split_once('@') {
        Some((_, version)) => {
            version.starts_with("0.2.") && !version.contains("-rc") || version == "0.3.0"
        }
        None => false,
    }
}

/// Whether the linker provides `import`.
fn provided(import: &str) -> bool {
    PROVIDED.iter().any(|prefix| import.starts_with(prefix))
        && (!import.starts_with("wasi:")
            || import.starts_with("wasi:config/")
            || import.starts_with("wasi:keyvalue/")
            || import.starts_with("wasi:otel/")
            || wasi_version_provided(import))
}

/// The Spin feature an import belongs to.
pub fn feature_of(import: &str) -> &'static str {
    let interface = import.split('@').next().unwrap_or(import);
    let name = interface.rsplit('/').next().unwrap_or(interface);
    match (interface, name) {
        (_, "llm") => "Serverless AI (`ai_models`)",
        (_, "redis" | "redis-types" | "inbound-redis") => "Redis (outbound Redis, Redis trigger)",
        (_, "postgres" | "outbound-pg" | "pg-types") => "outbound PostgreSQL",
        (_, "mysql" | "outbound-mysql" | "mysql-types") => "outbound MySQL",
        (_, "rdbms-types") => "outbound relational databases",
        (_, "mqtt") => "outbound MQTT",
        ("fermyon:spin/config", _) => "component configuration of Spin 1 apps (use variables)",
        ("fermyon:spin/http" | "fermyon:spin/http-types", _) => "outbound HTTP of Spin 1 apps",
        (i, _) if i.starts_with("wasi:keyvalue/") => "key-value through wasi:keyvalue",
        (i, _) if i.starts_with("wasi:otel/") => "guest telemetry through wasi:otel",
        (i, _) if i.starts_with("wasi:") => {
            "a WASI version hero-host does not link (it provides 0.2.x and 0.3.0; spin-sdk \
             2.0 and 2.1 apps use 0.2.0 release candidates)"
        }
        _ => "a Spin feature hero-host does not implement",
    }
}

/// The component's imports the linker does not provide, each with its
/// Spin feature, one per line; `None` when the table finds none.
pub fn unsupported(component: &Component) -> Option<String> {
    let engine = component.engine();
    let lines: Vec<String> = component
        .component_type()
        .imports(engine)
        .map(|(name, _)| name)
        .filter(|name| !provided(name))
        .map(|name| {
            format!(
                "imports `{name}` ({}), which hero-host does not provide",
                feature_of(name)
            )
        })
        .collect();
    (!lines.is_empty()).then(|| lines.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_the_linker_provides_is_known() {
        for import in [
            "wasi:cli/environment@0.2.0",
            "wasi:http/types@0.2.6",
            "wasi:http/handler@0.3.0",
            "spin:key-value/key-value@3.0.0",
            "spin:sqlite/sqlite@3.0.0",
            "wasi:config/store@0.2.0-draft-2024-09-27",
            "fermyon:spin/sqlite@2.0.0",
            "wasi:keyvalue/atomics@0.2.0-draft2",
            "wasi:otel/tracing@0.2.0-rc.2",
        ] {
            assert!(provided(import), "{import}");
        }
        for import in [
            "fermyon:spin/llm@2.0.0",
            "spin:postgres/postgres@4.2.0",
            "wasi:keyvalue/store@0.2.0-draft",
            "wasi:http/types@0.2.0-rc-2023-10-18",
            "wasi:http/handler@0.3.0-rc-2026-01-06",
            "fermyon:spin/config",
        ] {
            assert!(!provided(import), "{import}");
        }
    }

    #[test]
    fn names_the_spin_feature_of_an_import() {
        assert_eq!(
            feature_of("fermyon:spin/llm@2.0.0"),
            "Serverless AI (`ai_models`)"
        );
        assert_eq!(
            feature_of("spin:postgres/postgres@4.2.0"),
            "outbound PostgreSQL"
        );
        assert_eq!(
            feature_of("fermyon:spin/redis@2.0.0"),
            "Redis (outbound Redis, Redis trigger)"
        );
        assert_eq!(feature_of("spin:mqtt/mqtt@3.0.0"), "outbound MQTT");
        assert!(feature_of("wasi:http/types@0.2.0-rc-2023-10-18").contains("release candidates"));
        assert_eq!(
            feature_of("acme:thing/x@1.0.0"),
            "a Spin feature hero-host does not implement"
        );
    }
}
