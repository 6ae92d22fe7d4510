//! The Spin application manifest (`spin.toml`, manifest version 2): the parts
//! an HTTP application uses, validated before anything starts. Anything we
//! do not support is refused with a message that names it, never ignored
//! silently when it would change what the guest can do.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail, ensure};
use serde::Deserialize;

use self::raw::{RawHttpTrigger, RawManifest};
use crate::outbound::OutboundRule;
use crate::variables::{AppVariables, Definition, Template};

mod component;
mod raw;
mod trigger;
mod variables;

/// A loaded, validated manifest.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// The manifest file.
    pub path: PathBuf,
    /// Its directory; relative paths in it are resolved against this.
    pub dir: PathBuf,
    /// `[application]`.
    pub application: Application,
    /// `[variables]`, by name.
    pub variables: BTreeMap<String, Definition>,
    /// `[[trigger.http]]`, in manifest order.
    pub http_triggers: Vec<HttpTrigger>,
    /// `[component.<id>]`, by id.
    pub components: BTreeMap<String, Component>,
}

/// `[application]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Application {
    /// The application name.
    pub name: String,
    /// Its version.
    #[serde(default)]
    pub version: String,
    /// A description.
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    authors: Vec<String>,
    #[serde(default)]
    targets: Vec<toml::Value>,
    #[serde(default, rename = "trigger")]
    trigger_global_configs: BTreeMap<String, toml::Table>,
    #[serde(default)]
    tool: BTreeMap<String, toml::Table>,
}

/// One `[[trigger.http]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpTrigger {
    /// The route as written (`/heroes/:id`, `/...`), or `None` for a private
    /// endpoint (`route = { private = true }`), which is not routable.
    pub route: Option<String>,
    /// The component it invokes.
    pub component: String,
}

/// One `[component.<id>]`.
#[derive(Debug, Clone)]
pub struct Component {
    /// The component id.
    pub id: String,
    /// Absolute path of the wasm file.
    pub source: PathBuf,
    /// Environment variables the guest sees (and no others).
    pub environment: Vec<(String, String)>,
    /// Where the guest may send outbound HTTP requests: the entries without
    /// variables, and after [`Manifest::resolve_outbound_hosts`] the others.
    pub allowed_outbound_hosts: Vec<OutboundRule>,
    /// `allowed_outbound_hosts` entries with `{{ variable }}`, as written and
    /// parsed.
    pub outbound_templates: Vec<(String, Template)>,
    /// Key-value store labels the guest may open.
    pub key_value_stores: Vec<String>,
    /// SQLite database labels the guest may open.
    pub sqlite_databases: Vec<String>,
    /// `[component.<id>.variables]`: the guest's variables, as templates over
    /// the application's.
    pub variables: BTreeMap<String, Template>,
    /// `[component.<id>.build]`.
    pub build: Option<BuildConfig>,
}

/// `[component.<id>.build]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildConfig {
    /// Shell commands, run in order.
    pub commands: Vec<String>,
    /// Directory to run them in.
    pub workdir: PathBuf,
}

/// The route prefix Spin reserves for itself.
pub const WELL_KNOWN_PREFIX: &str = "/.well-known/spin/";

impl Manifest {
    /// Reads and validates a manifest; `path` may also be a directory holding
    /// `spin.toml`.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let path = if path.is_dir() {
            path.join("spin.toml")
        } else {
            path.to_owned()
        };
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read the manifest {}", path.display()))?;
        let path = std::path::absolute(&path)
            .with_context(|| format!("cannot resolve {}", path.display()))?;
        let dir = path.parent().map(Path::to_owned).unwrap_or_default();
        Self::parse(&text, path.clone(), dir)
            .with_context(|| format!("invalid manifest {}", path.display()))
    }

    /// Parses manifest text; relative paths resolve against `dir`.
    pub fn parse(text: &str, path: PathBuf, dir: PathBuf) -> anyhow::Result<Self> {
        // Check the version first, so a version 1 manifest gets that message
        // rather than a list of unknown fields.
        let table: toml::Table = toml::from_str(text)?;
        match table.get("spin_manifest_version") {
            Some(toml::Value::Integer(2)) => {}
            Some(toml::Value::String(v)) if v == "1" => bail!(
                "manifest version 1 is not supported: upgrade it to version 2 (`spin doctor` does it)"
            ),
            Some(other) => bail!("unsupported spin_manifest_version {other}: expected 2"),
            None => bail!("missing spin_manifest_version: expected `spin_manifest_version = 2`"),
        }
        let raw: RawManifest = toml::from_str(text)?;
        let _ = raw.spin_manifest_version;
        let variables = variables::definitions(raw.variables)?;
        let _ = (
            &raw.application.authors,
            &raw.application.targets,
            &raw.application.tool,
        );
        if let Some(http) = raw.application.trigger_global_configs.get("http") {
            let base = http
                .get("base")
                .and_then(toml::Value::as_str)
                .unwrap_or("/");
            ensure!(
                base == "/",
                "[application.trigger.http] base = {base:?} is not supported: prefix each route instead"
            );
        }

        let mut components = BTreeMap::new();
        for (id, raw_component) in raw.components {
            let component = Component::from_raw(&id, raw_component, &dir, &variables)
                .with_context(|| format!("component `{id}`"))?;
            components.insert(id, component);
        }

        let mut http_triggers = Vec::new();
        for (kind, triggers) in raw.triggers {
            ensure!(
                kind == "http",
                "trigger type `{kind}` is not supported: hero-host serves HTTP triggers only"
            );
            let triggers: Vec<RawHttpTrigger> = triggers.try_into().context("[[trigger.http]]")?;
            for (index, trigger) in triggers.into_iter().enumerate() {
                let trigger = HttpTrigger::from_raw(trigger, &components)
                    .with_context(|| format!("[[trigger.http]] number {}", index + 1))?;
                http_triggers.push(trigger);
            }
        }
        ensure!(
            !http_triggers.is_empty(),
            "no [[trigger.http]]: there is nothing to serve"
        );
        Ok(Manifest {
            path,
            dir,
            application: raw.application,
            variables,
            http_triggers,
            components,
        })
    }

    /// Renders every templated `allowed_outbound_hosts` entry with the
    /// variables' values and adds the rules. An entry that renders to an
    /// invalid rule is named as written; its value is shown only when no
    /// secret went into it.
    pub fn resolve_outbound_hosts(&mut self, values: &AppVariables) -> anyhow::Result<()> {
        for component in self.components.values_mut() {
            for (written, template) in &component.outbound_templates {
                let rendered = values.render(template);
                let rule = OutboundRule::parse(&rendered.text).with_context(|| {
                    let shown = if rendered.secret {
                        "a secret value".to_owned()
                    } else {
                        format!("{:?}", rendered.text)
                    };
                    format!(
                        "component `{}`: allowed_outbound_hosts entry {written:?} (as {shown})",
                        component.id
                    )
                })?;
                component.allowed_outbound_hosts.push(rule);
            }
        }
        Ok(())
    }

    /// Adds `-e KEY=VALUE` pairs to every component's environment; they win
    /// over the component's own `environment`, as in `spin up`.
    pub fn add_env(&mut self, env: &[(String, String)]) {
        for component in self.components.values_mut() {
            for (key, value) in env {
                component.environment.retain(|(k, _)| k != key);
                component.environment.push((key.clone(), value.clone()));
            }
        }
    }

    /// The components some trigger routes to, in id order.
    pub fn served_components(&self) -> impl Iterator<Item = &Component> {
        self.components.values().filter(|c| {
            self.http_triggers
                .iter()
                .any(|t| t.component == c.id && t.route.is_some())
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::component::is_kebab_id;
    use super::*;

    fn parse(text: &str) -> anyhow::Result<Manifest> {
        Manifest::parse(text, "/app/spin.toml".into(), "/app".into())
    }

    fn error_of(text: &str) -> String {
        format!("{:#}", parse(text).unwrap_err())
    }

    /// A manifest whose `[application]` table holds the `application` lines,
    /// with one component `id`, its source `{id}.wasm`, served on `route`.
    pub(crate) fn one_component_manifest(application: &str, route: &str, id: &str) -> String {
        format!(
            r#"
spin_manifest_version = 2
[application]
{application}
[[trigger.http]]
route = "{route}"
component = "{id}"
[component.{id}]
source = "{id}.wasm"
"#
        )
    }

    /// The app `demo`: the component `hello` on `/hello/...`.
    fn minimal() -> String {
        one_component_manifest(r#"name = "demo""#, "/hello/...", "hello")
    }

    #[test]
    fn parses_the_project_manifest() {
        let text =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../spin.toml")).unwrap();
        let manifest = parse(&text).unwrap();
        assert_eq!(manifest.application.name, "hero-registry");
        let routes: Vec<_> = manifest
            .http_triggers
            .iter()
            .map(|t| t.route.clone().unwrap())
            .collect();
        assert_eq!(routes, ["/", "/heroes", "/heroes/:id"]);
        let component = &manifest.components["hero-registry"];
        assert_eq!(component.key_value_stores, ["default"]);
        assert!(component.allowed_outbound_hosts.is_empty());
        assert_eq!(
            component.source,
            Path::new("/app/target/wasm32-wasip2/release/hero_registry.wasm")
        );
        let build = component.build.as_ref().unwrap();
        assert_eq!(build.workdir, Path::new("/app"));
        assert!(build.commands[0].starts_with("cargo build"));
    }

    #[test]
    fn resolves_source_against_the_manifest_directory() {
        let manifest = parse(&minimal()).unwrap();
        assert_eq!(
            manifest.components["hello"].source,
            Path::new("/app/hello.wasm")
        );
        assert_eq!(manifest.served_components().count(), 1);
    }

    #[test]
    fn rejects_version_1_with_advice() {
        let error = error_of("spin_manifest_version = \"1\"\nname = \"x\"");
        assert!(error.contains("version 1 is not supported"), "{error}");
        assert!(error_of("[application]\nname='x'").contains("missing spin_manifest_version"));
    }

    #[test]
    fn rejects_unknown_fields_with_their_name() {
        let error = error_of(&minimal().replace("source = ", "sorce = \"x\"\nsource = "));
        assert!(error.contains("sorce"), "{error}");
    }

    #[test]
    fn rejects_a_bad_store_label_of_any_component() {
        for label in ["My:Store", ""] {
            let error = error_of(&minimal().replace(
                "source = \"hello.wasm\"",
                &format!("source = \"hello.wasm\"\nkey_value_stores = [{label:?}]"),
            ));
            assert!(
                error.contains("must be kebab-case or snake_case"),
                "{error}"
            );
            assert!(error.contains("hello"), "names the component: {error}");
        }
    }

    #[test]
    fn rejects_a_trigger_to_an_undefined_component() {
        let error = error_of(&minimal().replace("component = \"hello\"", "component = \"nope\""));
        assert!(error.contains("component `nope` is not defined"), "{error}");
    }

    #[test]
    fn rejects_unsupported_capabilities_by_name() {
        let files = minimal().replace(
            "source = \"hello.wasm\"",
            "source = \"hello.wasm\"\nfiles = [\"static/**\"]",
        );
        assert!(error_of(&files).contains("`files`"));
        let remote = minimal().replace(
            "source = \"hello.wasm\"",
            "source = { url = \"https://x\", digest = \"sha256:0\" }",
        );
        assert!(error_of(&remote).contains("local `source`"));
    }

    const WITH_VARIABLES: &str = r#"
spin_manifest_version = 2
[application]
name = "demo"
[variables]
api_host = { default = "api.example.com" }
token = { required = true, secret = true }
[[trigger.http]]
route = "/..."
component = "hello"
[component.hello]
source = "hello.wasm"
sqlite_databases = ["default", "audit"]
allowed_outbound_hosts = ["https://{{ api_host }}", "http://localhost:8080"]
[component.hello.variables]
auth = "Bearer {{ token }}"
host = "{{api_host}}"
"#;

    #[test]
    fn reads_variables_templates_and_databases() {
        let manifest = parse(WITH_VARIABLES).unwrap();
        assert_eq!(
            manifest.variables["token"],
            Definition {
                default: None,
                secret: true
            }
        );
        assert_eq!(
            manifest.variables["api_host"].default.as_deref(),
            Some("api.example.com")
        );
        let hello = &manifest.components["hello"];
        assert_eq!(hello.sqlite_databases, ["default", "audit"]);
        assert_eq!(hello.allowed_outbound_hosts.len(), 1, "the literal entry");
        assert_eq!(hello.outbound_templates[0].0, "https://{{ api_host }}");
        let auth: Vec<_> = hello.variables["auth"].variables().collect();
        assert_eq!(auth, ["token"]);
    }

    #[test]
    fn renders_templated_outbound_hosts_with_the_values() {
        let mut manifest = parse(WITH_VARIABLES).unwrap();
        let env = |key: &str| (key == "SPIN_VARIABLE_TOKEN").then(|| std::ffi::OsString::from("t"));
        let values = AppVariables::resolve(
            &manifest.variables,
            &[crate::variables::Provider::default_env()],
            &env,
        )
        .unwrap();
        manifest.resolve_outbound_hosts(&values).unwrap();
        let rules = &manifest.components["hello"].allowed_outbound_hosts;
        assert!(crate::outbound::is_allowed(
            rules,
            "https",
            "api.example.com",
            443
        ));
        assert!(!crate::outbound::is_allowed(
            rules, "https", "evil.com", 443
        ));
    }

    #[test]
    fn a_secret_in_a_bad_outbound_entry_is_not_shown() {
        let text = WITH_VARIABLES.replace(
            "\"https://{{ api_host }}\"",
            "\"https://{{ api_host }}\", \"{{ token }}\"",
        );
        let mut manifest = parse(&text).unwrap();
        let env =
            |key: &str| (key == "SPIN_VARIABLE_TOKEN").then(|| std::ffi::OsString::from("hunter2"));
        let values = AppVariables::resolve(
            &manifest.variables,
            &[crate::variables::Provider::default_env()],
            &env,
        )
        .unwrap();
        let error = format!(
            "{:#}",
            manifest.resolve_outbound_hosts(&values).unwrap_err()
        );
        assert!(error.contains("{{ token }}"), "{error}");
        assert!(error.contains("a secret value"), "{error}");
        assert!(!error.contains("hunter2"), "{error}");
    }

    #[test]
    fn env_flags_reach_every_component_and_win() {
        let text = minimal().replace(
            "source = \"hello.wasm\"",
            "source = \"hello.wasm\"\nenvironment = { MODE = \"dev\", KEEP = \"1\" }",
        );
        let mut manifest = parse(&text).unwrap();
        manifest.add_env(&[("MODE".into(), "prod".into()), ("NEW".into(), "x".into())]);
        let mut environment = manifest.components["hello"].environment.clone();
        environment.sort();
        assert_eq!(
            environment,
            [
                ("KEEP".to_owned(), "1".to_owned()),
                ("MODE".to_owned(), "prod".to_owned()),
                ("NEW".to_owned(), "x".to_owned())
            ]
        );
    }

    #[test]
    fn rejects_bad_variable_declarations_and_references() {
        let error = error_of(&WITH_VARIABLES.replace(
            "token = { required = true, secret = true }",
            "token = { required = true, default = \"x\" }",
        ));
        assert!(error.contains("not both"), "{error}");
        let error = error_of(&WITH_VARIABLES.replace(
            "token = { required = true, secret = true }",
            "token = { secret = true }",
        ));
        assert!(error.contains("give it a `default`"), "{error}");
        let error = error_of(&WITH_VARIABLES.replace("{{ token }}", "{{ tokn }}"));
        assert!(error.contains("`tokn`, which is not defined"), "{error}");
        assert!(error.contains("variable `auth`"), "{error}");
        let error = error_of(&WITH_VARIABLES.replace("{{ api_host }}", "{{ nope }}"));
        assert!(error.contains("allowed_outbound_hosts entry"), "{error}");
        let error = error_of(&WITH_VARIABLES.replace("api_host = {", "Api_Host = {"));
        assert!(error.contains("[variables] Api_Host"), "{error}");
        let error = error_of(&WITH_VARIABLES.replace("\"audit\"", "\"Audit\""));
        assert!(error.contains("SQLite database label"), "{error}");
    }

    #[test]
    fn rejects_non_http_triggers() {
        let text = format!(
            "{}\n[[trigger.redis]]\nchannel = \"c\"\ncomponent = \"hello\"\n",
            minimal()
        );
        assert!(error_of(&text).contains("trigger type `redis` is not supported"));
    }

    #[test]
    fn rejects_reserved_routes_and_accepts_private_ones() {
        let reserved = minimal().replace("/hello/...", "/.well-known/spin/info");
        assert!(error_of(&reserved).contains("reserved"));
        let private = format!(
            "{}\n[[trigger.http]]\nroute = {{ private = true }}\ncomponent = \"hello\"\n",
            minimal()
        );
        let manifest = parse(&private).unwrap();
        assert_eq!(manifest.http_triggers[1].route, None);
    }

    #[test]
    fn adds_the_leading_slash_to_routes() {
        let manifest = parse(&minimal().replace("/hello/...", "hello")).unwrap();
        assert_eq!(manifest.http_triggers[0].route.as_deref(), Some("/hello"));
    }

    #[test]
    fn rejects_bad_toml_with_a_location() {
        let error = error_of("spin_manifest_version = 2\n[application\n");
        assert!(error.contains("line 2"), "{error}");
    }

    #[test]
    fn rejects_a_manifest_without_triggers() {
        let text = "spin_manifest_version = 2\n[application]\nname = \"x\"\n";
        assert!(error_of(text).contains("nothing to serve"));
    }

    #[test]
    fn component_ids_must_be_kebab_case() {
        assert!(is_kebab_id("hero-registry"));
        assert!(is_kebab_id("a1-b2"));
        assert!(!is_kebab_id("Hero"));
        assert!(!is_kebab_id("hero_registry"));
        assert!(!is_kebab_id("-x"));
        assert!(!is_kebab_id("1x"));
    }
}
