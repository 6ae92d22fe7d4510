//! Spin trigger-route matching: exact routes, `:param` segments and trailing
//! `/...` wildcards, the most specific route winning (exact beats a parameter
//! beats a wildcard; a longer wildcard prefix beats a shorter one). This is
//! the `routefinder` crate, the matcher Spin itself uses, so precedence is
//! identical.

use std::borrow::Cow;
use std::sync::Arc;

use anyhow::{Context, anyhow};
use http::{HeaderName, HeaderValue};

use crate::manifest::HttpTrigger;

/// What a route leads to.
#[derive(Debug)]
pub struct RouteEntry {
    /// Index of the component in the host's component list.
    pub component: usize,
    /// The route as written in the manifest (`/heroes/:id`, `/...`): the
    /// metrics' `http_route` label and the log's `route` field.
    pub route: Arc<str>,
    /// The route without a trailing slash or `/...`: Spin's
    /// `spin-matched-route` and `spin-component-route` (built once, here).
    pub matched_route: HeaderValue,
    /// The route as written, as Spin's `spin-raw-component-route`.
    pub raw_route: HeaderValue,
    /// `spin-path-match-<name>` for each `:name` segment, by name.
    pub param_headers: Vec<(String, HeaderName)>,
    /// Whether the route ends in `/...`.
    pub wildcard: bool,
}

impl RouteEntry {
    /// The `spin-path-match-*` header of the `:name` segment `name`.
    pub fn param_header(&self, name: &str) -> Option<&HeaderName> {
        self.param_headers
            .iter()
            .find(|(param, _)| param == name)
            .map(|(_, header)| header)
    }
}

/// A route that was written twice; the later one wins, as in Spin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuplicateRoute {
    /// The route.
    pub route: String,
    /// The component that lost it.
    pub replaced: String,
    /// The component that has it.
    pub effective: String,
}

/// The route table.
pub struct Router {
    inner: routefinder::Router<RouteEntry>,
}

/// A request path matched to a route.
#[derive(Debug)]
pub struct RouteMatch<'r, 'p> {
    /// The matched route.
    pub entry: &'r RouteEntry,
    /// The part of the path under a wildcard route (`spin-path-info`).
    pub path_info: Cow<'p, str>,
    captures: routefinder::Captures<'r, 'p>,
}

impl RouteMatch<'_, '_> {
    /// Names and values of `:name` segments (`spin-path-match-<name>`).
    pub fn params(&self) -> impl Iterator<Item = (&str, &str)> {
        self.captures.params().iter().map(|c| (c.name(), c.value()))
    }
}

impl Router {
    /// Builds the table from the manifest's triggers; `component_index` maps a
    /// component id to its index. Private routes are skipped.
    pub fn build(
        triggers: &[HttpTrigger],
        component_index: impl Fn(&str) -> usize,
    ) -> anyhow::Result<(Self, Vec<DuplicateRoute>)> {
        let mut by_route: Vec<(&str, &str)> = Vec::new();
        let mut duplicates = Vec::new();
        for trigger in triggers {
            let Some(route) = trigger.route.as_deref() else {
                continue;
            };
            if let Some(existing) = by_route.iter_mut().find(|(r, _)| *r == route) {
                duplicates.push(DuplicateRoute {
                    route: route.to_owned(),
                    replaced: existing.1.to_owned(),
                    effective: trigger.component.clone(),
                });
                existing.1 = &trigger.component;
            } else {
                by_route.push((route, &trigger.component));
            }
        }
        let mut inner = routefinder::Router::new();
        for (route, component) in by_route {
            let (spec, based_route, wildcard) = match route.strip_suffix("/...") {
                Some(prefix) => (format!("{prefix}/*"), prefix.to_owned(), true),
                None => {
                    let based = route.strip_suffix('/').unwrap_or(route).to_owned();
                    (based.clone(), based, false)
                }
            };
            let invalid = || format!("invalid route {route} of component `{component}`");
            let param_headers = route
                .split('/')
                .filter_map(|segment| segment.strip_prefix(':'))
                .map(|name| {
                    let header = format!("spin-path-match-{}", name.to_ascii_lowercase());
                    Ok((name.to_owned(), HeaderName::try_from(header)?))
                })
                .collect::<Result<_, http::header::InvalidHeaderName>>()
                .with_context(invalid)?;
            let entry = RouteEntry {
                component: component_index(component),
                route: route.into(),
                matched_route: HeaderValue::try_from(based_route).with_context(invalid)?,
                raw_route: HeaderValue::try_from(route).with_context(invalid)?,
                param_headers,
                wildcard,
            };
            inner
                .add(spec.as_str(), entry)
                .map_err(|e| anyhow!("{e}"))
                .with_context(invalid)?;
        }
        Ok((Router { inner }, duplicates))
    }

    /// The best route for a path, if any.
    pub fn route<'r, 'p>(&'r self, path: &'p str) -> Option<RouteMatch<'r, 'p>> {
        let found = self.inner.best_match(path)?;
        let entry = found.handler();
        let captures = found.captures();
        let path_info = if entry.wildcard {
            // Spin keeps the trailing slash of the request in the path info.
            match (captures.wildcard().unwrap_or(""), path.ends_with('/')) {
                ("", false) => Cow::Borrowed(""),
                ("", true) => Cow::Borrowed("/"),
                (rest, false) => Cow::Owned(format!("/{rest}")),
                (rest, true) => Cow::Owned(format!("/{rest}/")),
            }
        } else {
            Cow::Borrowed("")
        };
        Some(RouteMatch {
            entry,
            path_info,
            captures,
        })
    }

    /// Every route and its component index, for start-up logging.
    pub fn entries(&self) -> impl Iterator<Item = &RouteEntry> {
        self.inner.iter().map(|(_, entry)| entry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router(routes: &[(&str, &str)]) -> Router {
        let triggers: Vec<HttpTrigger> = routes
            .iter()
            .map(|(route, component)| HttpTrigger {
                route: Some((*route).into()),
                component: (*component).into(),
            })
            .collect();
        let names: Vec<&str> = routes.iter().map(|(_, c)| *c).collect();
        Router::build(&triggers, |c| names.iter().position(|n| *n == c).unwrap())
            .unwrap()
            .0
    }

    fn route_of(router: &Router, path: &str) -> Option<String> {
        router.route(path).map(|m| m.entry.route.to_string())
    }

    #[test]
    fn exact_beats_param_beats_wildcard() {
        let r = router(&[
            ("/...", "all"),
            ("/heroes/:id", "one"),
            ("/heroes/new", "new"),
            ("/heroes", "list"),
        ]);
        assert_eq!(route_of(&r, "/heroes/new").as_deref(), Some("/heroes/new"));
        assert_eq!(route_of(&r, "/heroes/42").as_deref(), Some("/heroes/:id"));
        assert_eq!(route_of(&r, "/heroes").as_deref(), Some("/heroes"));
        assert_eq!(route_of(&r, "/heroes/42/powers").as_deref(), Some("/..."));
        assert_eq!(route_of(&r, "/").as_deref(), Some("/..."));
    }

    #[test]
    fn longest_wildcard_prefix_wins_regardless_of_order() {
        for routes in [
            [
                ("/one/...", "a"),
                ("/one/two/...", "b"),
                ("/one/two/three/...", "c"),
            ],
            [
                ("/one/two/three/...", "c"),
                ("/one/two/...", "b"),
                ("/one/...", "a"),
            ],
        ] {
            let r = router(&routes);
            assert_eq!(
                route_of(&r, "/one/two/three/four").as_deref(),
                Some("/one/two/three/...")
            );
            assert_eq!(route_of(&r, "/one/two/x").as_deref(), Some("/one/two/..."));
            assert_eq!(route_of(&r, "/one").as_deref(), Some("/one/..."));
        }
    }

    #[test]
    fn exact_routes_do_not_match_deeper_paths() {
        let r = router(&[("/", "root"), ("/heroes", "list"), ("/heroes/:id", "one")]);
        assert_eq!(route_of(&r, "/").as_deref(), Some("/"));
        assert_eq!(route_of(&r, "/nope"), None);
        assert_eq!(route_of(&r, "/heroes/a/b"), None);
        // Spin ignores a trailing slash.
        assert_eq!(route_of(&r, "/heroes/").as_deref(), Some("/heroes"));
    }

    #[test]
    fn captures_params_and_path_info() {
        let r = router(&[("/heroes/:id", "one"), ("/static/...", "files")]);
        let m = r.route("/heroes/01ABC").unwrap();
        assert_eq!(m.params().collect::<Vec<_>>(), [("id", "01ABC")]);
        assert_eq!(m.path_info, "");
        for (path, info) in [
            ("/static", ""),
            ("/static/", "/"),
            ("/static/a/b", "/a/b"),
            ("/static/a/", "/a/"),
        ] {
            assert_eq!(r.route(path).unwrap().path_info, info, "{path}");
        }
        let entry = r.route("/static/x").unwrap().entry;
        assert_eq!(entry.matched_route, "/static");
        assert_eq!(entry.raw_route, "/static/...");
        let entry = r.route("/heroes/01ABC").unwrap().entry;
        assert_eq!(
            entry.param_header("id").map(HeaderName::as_str),
            Some("spin-path-match-id")
        );
    }

    #[test]
    fn duplicate_routes_last_one_wins_and_are_reported() {
        let triggers = [
            HttpTrigger {
                route: Some("/a".into()),
                component: "first".into(),
            },
            HttpTrigger {
                route: Some("/a".into()),
                component: "second".into(),
            },
            HttpTrigger {
                route: None,
                component: "private".into(),
            },
        ];
        let (r, duplicates) = Router::build(&triggers, |c| {
            ["first", "second", "private"]
                .iter()
                .position(|n| *n == c)
                .unwrap()
        })
        .unwrap();
        assert_eq!(r.route("/a").unwrap().entry.component, 1);
        assert_eq!(
            duplicates,
            [DuplicateRoute {
                route: "/a".into(),
                replaced: "first".into(),
                effective: "second".into()
            }]
        );
        assert_eq!(r.entries().count(), 1, "private routes are not routable");
    }
}
