//! `[[trigger.http]]`: routes and the component each one invokes.

use std::collections::BTreeMap;

use anyhow::{bail, ensure};

use super::raw::{RawHttpTrigger, RawRoute};
use super::{Component, HttpTrigger, WELL_KNOWN_PREFIX};

impl HttpTrigger {
    pub(super) fn from_raw(
        raw: RawHttpTrigger,
        components: &BTreeMap<String, Component>,
    ) -> anyhow::Result<Self> {
        let _ = raw.id;
        ensure!(
            raw.components.is_empty(),
            "`components` (middleware chains) is not supported by hero-host"
        );
        if let Some(executor) = &raw.executor {
            let kind = executor
                .get("type")
                .and_then(toml::Value::as_str)
                .unwrap_or("");
            ensure!(
                kind == "spin",
                "executor type {kind:?} is not supported: hero-host runs the `spin` executor only"
            );
        }
        let route = match raw.route {
            None => bail!("missing `route`"),
            Some(RawRoute::Private { private: true }) => None,
            Some(RawRoute::Private { private: false }) => {
                bail!("route must be a path or `{{ private = true }}`")
            }
            Some(RawRoute::Path(route)) => Some(normalize_route(&route)?),
        };
        let component = match raw.component {
            Some(toml::Value::String(id)) => id,
            Some(_) => bail!(
                "inline component tables are not supported: declare [component.<id>] and reference it by id"
            ),
            None => bail!("missing `component`"),
        };
        ensure!(
            components.contains_key(&component),
            "component `{component}` is not defined: add [component.{component}]"
        );
        Ok(HttpTrigger { route, component })
    }
}

/// A route with a leading slash; reserved paths refused.
fn normalize_route(route: &str) -> anyhow::Result<String> {
    let route = if route.starts_with('/') {
        route.to_owned()
    } else {
        format!("/{route}")
    };
    ensure!(
        !route.starts_with(WELL_KNOWN_PREFIX),
        "route {route} is reserved: {WELL_KNOWN_PREFIX} belongs to the host"
    );
    Ok(route)
}
