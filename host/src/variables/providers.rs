//! Where application variables get their values, in the order Spin asks
//! them: `--variable` flags, then the runtime config's
//! `[[variables_provider]]` entries, then `SPIN_VARIABLE_<NAME>` in the
//! environment; a variable none of them sets takes its default.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use super::check_name;

/// The prefix of the environment provider every application has.
pub const DEFAULT_ENV_PREFIX: &str = "SPIN_VARIABLE";

/// One source of variable values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Provider {
    /// `type = "env"`: `<PREFIX>_<NAME>` (the name upper-cased) from the
    /// process environment.
    Env {
        /// `SPIN_VARIABLE` unless configured.
        prefix: String,
    },
    /// `type = "static"` in the runtime config, or the `--variable` flags.
    Static {
        /// Where the values came from, for the start-up log.
        origin: &'static str,
        /// Values by variable name.
        values: HashMap<String, String>,
    },
}

/// Reads the process environment (a map in unit tests).
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<OsString>;

impl Provider {
    /// The environment provider with the default prefix.
    pub fn default_env() -> Self {
        Provider::Env {
            prefix: DEFAULT_ENV_PREFIX.to_owned(),
        }
    }

    /// The value this provider has for `name`, and where it was found (for
    /// logs; never the value itself).
    pub fn get(&self, name: &str, env: EnvLookup<'_>) -> anyhow::Result<Option<(String, String)>> {
        match self {
            Provider::Env { prefix } => {
                let key = if prefix.is_empty() {
                    name.to_ascii_uppercase()
                } else {
                    format!("{prefix}_{}", name.to_ascii_uppercase())
                };
                match env(&key) {
                    None => Ok(None),
                    Some(value) => match value.into_string() {
                        Ok(value) => Ok(Some((value, format!("environment {key}")))),
                        Err(_) => bail!("the environment variable {key} is not valid UTF-8"),
                    },
                }
            }
            Provider::Static { origin, values } => Ok(values
                .get(name)
                .map(|value| (value.clone(), (*origin).to_owned()))),
        }
    }
}

/// Reads `--variable` arguments as `spin up` takes them: `KEY=VALUE`,
/// `KEY=@FILE` (the file's text), `@FILE.json` or `@FILE.toml` (a table of
/// names to strings). Later arguments win. Relative paths resolve against
/// the working directory, as in a shell.
pub fn from_flags(flags: &[String]) -> anyhow::Result<Option<Provider>> {
    if flags.is_empty() {
        return Ok(None);
    }
    let mut values = HashMap::new();
    for flag in flags {
        let read = |path: &Path| {
            std::fs::read_to_string(path)
                .with_context(|| format!("--variable {flag}: cannot read {}", path.display()))
        };
        if let Some(file) = flag.strip_prefix('@') {
            let path = PathBuf::from(file);
            let table: HashMap<String, String> = match path.extension().and_then(|e| e.to_str()) {
                Some("json") => serde_json::from_str(&read(&path)?)
                    .with_context(|| format!("--variable {flag}: not a JSON object of strings"))?,
                Some("toml") => toml::from_str(&read(&path)?)
                    .with_context(|| format!("--variable {flag}: not a TOML table of strings"))?,
                _ => bail!("--variable {flag}: a variables file must end in .json or .toml"),
            };
            values.extend(table);
        } else if let Some((name, value)) = flag.split_once('=') {
            let value = match value.strip_prefix('@') {
                Some(file) => read(Path::new(file))?,
                None => value.to_owned(),
            };
            values.insert(name.to_owned(), value);
        } else {
            bail!("--variable {flag:?}: expected KEY=VALUE, KEY=@FILE, @FILE.json or @FILE.toml");
        }
    }
    for name in values.keys() {
        check_name(name).map_err(|why| anyhow::anyhow!("--variable {name:?}: {why}"))?;
    }
    Ok(Some(Provider::Static {
        origin: "--variable",
        values,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<OsString> {
        move |key| {
            pairs
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| OsString::from(v))
        }
    }

    #[test]
    fn env_provider_upper_cases_the_name_after_its_prefix() {
        let env = env_of(&[("SPIN_VARIABLE_API_KEY", "k1"), ("APP_API_KEY", "k2")]);
        let default = Provider::default_env();
        assert_eq!(
            default.get("api_key", &env).unwrap(),
            Some(("k1".into(), "environment SPIN_VARIABLE_API_KEY".into()))
        );
        let prefixed = Provider::Env {
            prefix: "APP".into(),
        };
        assert_eq!(prefixed.get("api_key", &env).unwrap().unwrap().0, "k2");
        assert_eq!(default.get("other", &env).unwrap(), None);
    }

    #[test]
    fn flags_take_values_files_and_tables() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "s3cret").unwrap();
        let json = dir.path().join("vars.json");
        std::fs::write(&json, r#"{"region": "eu", "size": "m"}"#).unwrap();
        let flags = [
            format!("@{}", json.display()),
            "size=l".to_owned(),
            format!("token=@{}", token.display()),
            "url=http://x?a=b".to_owned(),
        ];
        let Some(Provider::Static { values, origin }) = from_flags(&flags).unwrap() else {
            panic!("a static provider")
        };
        assert_eq!(origin, "--variable");
        assert_eq!(values["region"], "eu");
        assert_eq!(values["size"], "l", "later flags win");
        assert_eq!(values["token"], "s3cret");
        assert_eq!(values["url"], "http://x?a=b");
        assert_eq!(from_flags(&[]).unwrap(), None);
    }

    #[test]
    fn flags_reject_bad_forms_clearly() {
        let error = |flag: &str| format!("{:#}", from_flags(&[flag.to_owned()]).unwrap_err());
        assert!(error("novalue").contains("expected KEY=VALUE"));
        assert!(error("@vars.yaml").contains(".json or .toml"));
        assert!(error("Bad=1").contains("--variable \"Bad\""));
        assert!(error("x=@/nonexistent/file").contains("cannot read"));
    }
}
