//! Spin trigger-route matching: exact routes, `:param` segments and trailing
//! `/...` wildcards, the most specific route winning (exact beats a parameter
//! beats a wildcard; a longer wildcard prefix beats a shorter one). This is
//! the `routefinder` crate, the matcher Spin itself uses, so precedence is
//! identical. What a route leads to is the caller's: the router holds a `T`
//! per route.

use std::borrow::Cow;

use anyhow::{Context, anyhow};

use crate::manifest::HttpTrigger;

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
pub struct Router<T> {
    inner: routefinder::Router<Target<T>>,
}

/// One route's entry.
struct Target<T> {
    wildcard: bool,
    value: T,
}

/// A request path matched to a route.
pub struct RouteMatch<'r, 'p, T> {
    /// What the route leads to.
    pub target: &'r T,
    /// The part of the path under a wildcard route (`spin-path-info`).
    pub path_info: Cow<'p, str>,
    captures: routefinder::Captures<'r, 'p>,
}

impl<T> RouteMatch<'_, '_, T> {
    /// Names and values of `:name` segments (`spin-path-match-<name>`).
    pub fn params(&self) -> impl Iterator<Item = (&str, &str)> {
        self.captures.params().iter().map(|c| (c.name(), c.value()))
    }
}

impl<T> Router<T> {
    /// Builds the table from the manifest's triggers; `target` makes what a
    /// route leads to from its trigger. Private routes are skipped.
    pub fn build(
        triggers: &[HttpTrigger],
        mut target: impl FnMut(&str, &str) -> anyhow::Result<T>,
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
            let (spec, wildcard) = match route.strip_suffix("/...") {
                Some(prefix) => (format!("{prefix}/*"), true),
                None => (route.strip_suffix('/').unwrap_or(route).to_owned(), false),
            };
            let invalid = || format!("invalid route {route} of component `{component}`");
            let value = target(route, component).with_context(invalid)?;
            inner
                .add(spec.as_str(), Target { wildcard, value })
                .map_err(|e| anyhow!("{e}"))
                .with_context(invalid)?;
        }
        Ok((Router { inner }, duplicates))
    }

    /// The best route for a path, if any.
    pub fn route<'r, 'p>(&'r self, path: &'p str) -> Option<RouteMatch<'r, 'p, T>> {
        let found = self.inner.best_match(path)?;
        let target = found.handler();
        let captures = found.captures();
        let path_info = if target.wildcard {
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
            target: &target.value,
            path_info,
            captures,
        })
    }

    /// What every route leads to.
    pub fn targets(&self) -> impl Iterator<Item = &T> {
        self.inner.iter().map(|(_, target)| &target.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A router whose targets are `(route, component)`.
    fn router(routes: &[(&str, &str)]) -> Router<(String, String)> {
        let triggers: Vec<HttpTrigger> = routes
            .iter()
            .map(|(route, component)| HttpTrigger {
                route: Some((*route).into()),
                component: (*component).into(),
            })
            .collect();
        Router::build(&triggers, |route, component| {
            Ok((route.to_owned(), component.to_owned()))
        })
        .unwrap()
        .0
    }

    fn route_of(router: &Router<(String, String)>, path: &str) -> Option<String> {
        router.route(path).map(|m| m.target.0.clone())
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
    }

    #[test]
    fn a_target_that_cannot_be_made_names_the_route() {
        let triggers = [HttpTrigger {
            route: Some("/x/:bad".into()),
            component: "c".into(),
        }];
        let error = Router::<()>::build(&triggers, |_, _| Err(anyhow!("no")))
            .err()
            .unwrap();
        assert!(
            format!("{error:#}").contains("invalid route /x/:bad of component `c`"),
            "{error:#}"
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
        let (r, duplicates) =
            Router::build(&triggers, |_, component| Ok(component.to_owned())).unwrap();
        assert_eq!(r.route("/a").unwrap().target, "second");
        assert_eq!(
            duplicates,
            [DuplicateRoute {
                route: "/a".into(),
                replaced: "first".into(),
                effective: "second".into()
            }]
        );
        assert_eq!(r.targets().count(), 1, "private routes are not routable");
    }
}
