//! Application variables as Spin has them: `[variables]` in the manifest
//! (a default, or `required`; `secret` ones never logged), each component's
//! `[component.<id>.variables]` templates over them, values from the
//! providers (see [`providers`]). Everything is resolved once at start-up,
//! so a missing required variable stops `up` before any port is bound, and a
//! guest's read is a map lookup.
//!
//! Values are never written to a log line or a metric label, secret or not:
//! the start-up log names each variable and where its value came from.

pub mod host;

pub mod providers;
mod template;

use std::collections::{BTreeMap, HashMap};

use anyhow::bail;

use crate::manifest::Manifest;

pub use self::providers::{EnvLookup, Provider};
pub use self::template::{Part, Template};

/// Resolves the manifest's variables (from `--variable` `flags`, then the
/// runtime config's `configured` providers, then `SPIN_VARIABLE_<NAME>`),
/// and renders the templated `allowed_outbound_hosts` with them.
pub fn configure(
    manifest: &mut Manifest,
    configured: &[Provider],
    flags: &[String],
) -> anyhow::Result<AppVariables> {
    let providers: Vec<Provider> = providers::from_flags(flags)?
        .into_iter()
        .chain(configured.iter().cloned())
        .chain([Provider::default_env()])
        .collect();
    let values = AppVariables::resolve(&manifest.variables, &providers, &|key| {
        std::env::var_os(key)
    })?;
    manifest.resolve_outbound_hosts(&values)?;
    Ok(values)
}

/// Logs each variable's name and where its value came from; never a value.
pub fn log_origins(values: &AppVariables) {
    for origin in values.origins() {
        tracing::info!(
            variable = origin.name.as_str(),
            source = origin.source.as_str(),
            secret = origin.secret,
            "variable"
        );
    }
}

/// One `[variables]` entry, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Definition {
    /// The value when no provider sets one; `None` for a required variable.
    pub default: Option<String>,
    /// Whether the value is sensitive.
    pub secret: bool,
}

/// Checks a variable name as Spin does: lower-case letters, digits and
/// single underscores, starting with a letter and not ending with `_`.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_'))
    {
        return Err(format!(
            "invalid character {bad:?}: use lower-case letters, digits and underscores"
        ));
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err("must start with a lower-case letter".into());
    }
    if name.ends_with('_') || name.contains("__") {
        return Err("must not end with `_` or contain `__`".into());
    }
    Ok(())
}

/// A value and whether it is secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Value {
    /// The text.
    pub text: String,
    /// Whether any variable it came from is secret.
    pub secret: bool,
}

/// Where one application variable's value came from, for the start-up log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The variable.
    pub name: String,
    /// `environment SPIN_VARIABLE_X`, `--variable`, `runtime config`, or
    /// `default`.
    pub source: String,
    /// Whether it is secret.
    pub secret: bool,
}

/// The application variables' values, resolved at start-up.
#[derive(Debug, Default)]
pub struct AppVariables {
    values: HashMap<String, Value>,
    origins: Vec<Origin>,
}

impl AppVariables {
    /// Asks the providers, in order, for every defined variable; one none
    /// sets takes its default. Every required variable without a value is
    /// named in the error.
    pub fn resolve(
        definitions: &BTreeMap<String, Definition>,
        providers: &[Provider],
        env: EnvLookup<'_>,
    ) -> anyhow::Result<Self> {
        let mut resolved = AppVariables::default();
        let mut missing = Vec::new();
        for (name, definition) in definitions {
            let mut found = None;
            for provider in providers {
                if let Some(hit) = provider.get(name, env)? {
                    found = Some(hit);
                    break;
                }
            }
            let (text, source) = match (found, &definition.default) {
                (Some(hit), _) => hit,
                (None, Some(default)) => (default.clone(), "default".to_owned()),
                (None, None) => {
                    missing.push(name.as_str());
                    continue;
                }
            };
            let secret = definition.secret;
            resolved.origins.push(Origin {
                name: name.clone(),
                source,
                secret,
            });
            resolved.values.insert(name.clone(), Value { text, secret });
        }
        if !missing.is_empty() {
            let hints: Vec<String> = missing
                .iter()
                .map(|name| {
                    format!(
                        "{}_{}",
                        providers::DEFAULT_ENV_PREFIX,
                        name.to_ascii_uppercase()
                    )
                })
                .collect();
            bail!(
                "required variable{} {} not set: set {} in the environment, pass --variable, \
                 or configure a [[variables_provider]] in the runtime config",
                if missing.len() == 1 { "" } else { "s" },
                missing
                    .iter()
                    .map(|n| format!("`{n}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
                hints.join(", ")
            );
        }
        Ok(resolved)
    }

    /// Where each variable's value came from.
    pub fn origins(&self) -> &[Origin] {
        &self.origins
    }

    /// The text of `template` with every variable replaced. Every variable it
    /// names is defined (the manifest checks it).
    pub fn render(&self, template: &Template) -> Value {
        let mut rendered = Value {
            text: String::new(),
            secret: false,
        };
        for part in template.parts() {
            match part {
                Part::Literal(text) => rendered.text.push_str(text),
                Part::Variable(name) => {
                    if let Some(value) = self.values.get(name) {
                        rendered.text.push_str(&value.text);
                        rendered.secret |= value.secret;
                    }
                }
            }
        }
        rendered
    }

    /// A component's variables, its templates rendered.
    pub fn component(&self, templates: &BTreeMap<String, Template>) -> ComponentVariables {
        ComponentVariables {
            values: templates
                .iter()
                .map(|(name, template)| (name.clone(), self.render(template).text))
                .collect(),
        }
    }
}

/// What a guest's lookup finds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup<'a> {
    /// The component's value.
    Found(&'a str),
    /// Not a valid variable name.
    InvalidName(String),
    /// The component has no such variable.
    Undefined,
}

/// One component's variables, as its guest reads them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ComponentVariables {
    values: BTreeMap<String, String>,
}

impl ComponentVariables {
    /// The value of `name`.
    pub fn get(&self, name: &str) -> Lookup<'_> {
        if let Err(why) = check_name(name) {
            return Lookup::InvalidName(format!("{name:?}: {why}"));
        }
        match self.values.get(name) {
            Some(value) => Lookup::Found(value),
            None => Lookup::Undefined,
        }
    }

    /// Every variable and its value, by name.
    pub fn all(&self) -> impl Iterator<Item = (&str, &str)> {
        self.values.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;

    use super::*;

    fn definitions() -> BTreeMap<String, Definition> {
        BTreeMap::from([
            (
                "greeting".to_owned(),
                Definition {
                    default: Some("hello".into()),
                    secret: false,
                },
            ),
            (
                "token".to_owned(),
                Definition {
                    default: None,
                    secret: true,
                },
            ),
        ])
    }

    fn no_env(_: &str) -> Option<OsString> {
        None
    }

    #[test]
    fn names_follow_spins_rules() {
        for good in ["a", "api_key", "a1_b2"] {
            assert_eq!(check_name(good), Ok(()), "{good}");
        }
        for bad in ["", "Api", "1a", "_a", "a_", "a__b", "a-b", "a.b"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn providers_are_asked_in_order_before_the_default() {
        let flags = Provider::Static {
            origin: "--variable",
            values: HashMap::from([("token".to_owned(), "from-flag".to_owned())]),
        };
        let env = |key: &str| (key == "SPIN_VARIABLE_TOKEN").then(|| OsString::from("from-env"));
        let resolved =
            AppVariables::resolve(&definitions(), &[flags, Provider::default_env()], &env).unwrap();
        let token = Template::parse("Bearer {{ token }}").unwrap();
        assert_eq!(
            resolved.render(&token),
            Value {
                text: "Bearer from-flag".into(),
                secret: true
            }
        );
        let greeting = Template::parse("{{greeting}}, world").unwrap();
        assert_eq!(resolved.render(&greeting).text, "hello, world");
        assert!(!resolved.render(&greeting).secret);
        let sources: Vec<_> = resolved
            .origins()
            .iter()
            .map(|o| o.source.as_str())
            .collect();
        assert_eq!(sources, ["default", "--variable"]);

        let resolved =
            AppVariables::resolve(&definitions(), &[Provider::default_env()], &env).unwrap();
        assert_eq!(resolved.render(&token).text, "Bearer from-env");
    }

    #[test]
    fn a_missing_required_variable_is_named_with_its_environment_variable() {
        let error = AppVariables::resolve(&definitions(), &[Provider::default_env()], &no_env)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("required variable `token` not set"),
            "{error}"
        );
        assert!(error.contains("SPIN_VARIABLE_TOKEN"), "{error}");
    }

    #[test]
    fn a_component_sees_only_its_own_variables() {
        let env = |key: &str| (key == "SPIN_VARIABLE_TOKEN").then(|| OsString::from("t"));
        let resolved =
            AppVariables::resolve(&definitions(), &[Provider::default_env()], &env).unwrap();
        let templates = BTreeMap::from([(
            "message".to_owned(),
            Template::parse("{{ greeting }}!").unwrap(),
        )]);
        let component = resolved.component(&templates);
        assert_eq!(component.get("message"), Lookup::Found("hello!"));
        assert_eq!(component.get("greeting"), Lookup::Undefined);
        assert!(matches!(component.get("Nope"), Lookup::InvalidName(_)));
        assert_eq!(component.all().collect::<Vec<_>>(), [("message", "hello!")]);
    }
}
