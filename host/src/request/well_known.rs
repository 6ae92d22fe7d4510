//! The paths under `/.well-known/spin/` that the host answers itself, as
//! `spin up` does: `health` (`OK`) and `info` (the application's name and
//! version as JSON); any other path under the prefix is not found, and never
//! reaches a component.

use bytes::Bytes;
use http::StatusCode;
use serde::Serialize;

use super::reply::Reply;
use crate::manifest::Application;

/// The prefix Spin keeps for itself.
pub const WELL_KNOWN_PREFIX: &str = "/.well-known/spin/";

/// Spin's health path, answered by the host.
pub const HEALTH_PATH: &str = "/.well-known/spin/health";

/// Spin's application information path.
pub const INFO_PATH: &str = "/.well-known/spin/info";

/// The answers, made once at start.
#[derive(Debug, Clone)]
pub struct WellKnown {
    info: Bytes,
}

/// The body of `info`, in Spin's shape: `version` only when the manifest
/// has one.
#[derive(Serialize)]
struct AppInfo<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<&'a str>,
}

impl WellKnown {
    /// The answers for `application`.
    pub fn new(application: &Application) -> Self {
        let info = AppInfo {
            name: &application.name,
            version: Some(application.version.as_str()).filter(|v| !v.is_empty()),
        };
        // Pretty, as Spin writes it.
        let info = serde_json::to_vec_pretty(&info).expect("strings always serialize");
        WellKnown { info: info.into() }
    }

    /// The host's answer when `path` is one of its own, whatever the method
    /// (as in Spin).
    pub fn answer(&self, path: &str) -> Option<Reply> {
        if !path.starts_with(WELL_KNOWN_PREFIX) {
            return None;
        }
        Some(match path {
            HEALTH_PATH => Reply::text(StatusCode::OK, "OK"),
            INFO_PATH => Reply::json(StatusCode::OK, self.info.clone()),
            _ => Reply::error(StatusCode::NOT_FOUND),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn application(version: &str) -> Application {
        let manifest = format!("name = \"demo\"\nversion = \"{version}\"");
        toml::from_str(&manifest).unwrap()
    }

    fn body(reply: Reply) -> (StatusCode, Bytes) {
        match reply {
            Reply::Host { status, body, .. } => (status, body),
            Reply::Guest(_) => panic!("a host answer"),
        }
    }

    #[test]
    fn info_has_the_name_and_version_in_spins_shape() {
        let known = WellKnown::new(&application("1.2.3"));
        let (status, info) = body(known.answer(INFO_PATH).unwrap());
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            &info[..],
            b"{\n  \"name\": \"demo\",\n  \"version\": \"1.2.3\"\n}"
        );
    }

    #[test]
    fn info_leaves_out_a_missing_version() {
        let known = WellKnown::new(&application(""));
        let (_, info) = body(known.answer(INFO_PATH).unwrap());
        assert_eq!(&info[..], b"{\n  \"name\": \"demo\"\n}");
    }

    #[test]
    fn other_well_known_paths_are_not_found_and_app_paths_are_not_answered() {
        let known = WellKnown::new(&application("1"));
        let (status, _) = body(known.answer("/.well-known/spin/other").unwrap());
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body(known.answer(HEALTH_PATH).unwrap()).0, StatusCode::OK);
        assert!(known.answer("/heroes").is_none());
        assert!(known.answer("/.well-known/other").is_none());
    }
}
