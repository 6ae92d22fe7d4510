//! The Spin application manifest (`spin.toml`, manifest version 2): the parts
//! an HTTP application uses, validated before anything starts. Anything we
//! do not support is refused with a message that names it, never ignored
//! silently when it would change what the guest can do.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail, ensure};
use serde::Deserialize;

use self::raw::{Commands, RawComponent, RawHttpTrigger, RawManifest, RawRoute};
use crate::outbound::OutboundRule;

mod raw;

/// A loaded, validated manifest.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// The manifest file.
    pub path: PathBuf,
    /// Its directory; relative paths in it are resolved against this.
    pub dir: PathBuf,
    /// `[application]`.
    pub application: Application,
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
    /// Where the guest may send outbound HTTP requests.
    pub allowed_outbound_hosts: Vec<OutboundRule>,
    /// Key-value store labels the guest may open.
    pub key_value_stores: Vec<String>,
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
        ensure!(
            raw.variables.is_empty(),
            "application variables are not supported by hero-host"
        );
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
            let component = Component::from_raw(&id, raw_component, &dir)
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
            http_triggers,
            components,
        })
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

impl HttpTrigger {
    fn from_raw(
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

impl Component {
    fn from_raw(id: &str, raw: RawComponent, dir: &Path) -> anyhow::Result<Self> {
        ensure!(
            is_kebab_id(id),
            "component id `{id}` must be kebab-case (lowercase letters, digits, `-`)"
        );
        let source = match raw.source {
            toml::Value::String(path) => dir.join(path),
            _ => bail!("only a local `source` path is supported, not a URL or registry package"),
        };
        let unsupported = [
            (raw.variables.is_empty(), "component `variables`"),
            (raw.files.is_empty(), "`files` (guests get no filesystem)"),
            (raw.sqlite_databases.is_empty(), "`sqlite_databases`"),
            (raw.ai_models.is_empty(), "`ai_models`"),
            (raw.dependencies.is_empty(), "component `dependencies`"),
            (
                raw.allowed_http_hosts.is_empty(),
                "deprecated `allowed_http_hosts` (use `allowed_outbound_hosts`)",
            ),
        ];
        for (absent, what) in unsupported {
            ensure!(absent, "{what} is not supported by hero-host");
        }
        // Descriptive or tool-specific fields change nothing at run time.
        let _ = (
            raw.description,
            raw.exclude_files,
            raw.targets,
            raw.tool,
            raw.dependencies_inherit_configuration,
            raw.profile,
        );
        let allowed_outbound_hosts = raw
            .allowed_outbound_hosts
            .iter()
            .map(|rule| {
                OutboundRule::parse(rule)
                    .with_context(|| format!("allowed_outbound_hosts entry {rule:?}"))
            })
            .collect::<anyhow::Result<_>>()?;
        for label in &raw.key_value_stores {
            ensure!(
                crate::kv::is_valid_label(label),
                "key-value store label {label:?} must be kebab-case or snake_case"
            );
        }
        let build = raw.build.map(|build| {
            let _ = build.watch;
            BuildConfig {
                commands: match build.command {
                    Commands::One(command) => vec![command],
                    Commands::Many(commands) => commands,
                },
                workdir: build
                    .workdir
                    .map_or_else(|| dir.to_owned(), |w| dir.join(w)),
            }
        });
        Ok(Component {
            id: id.to_owned(),
            source,
            environment: raw.environment.into_iter().collect(),
            allowed_outbound_hosts,
            key_value_stores: raw.key_value_stores,
            build,
        })
    }
}

fn is_kebab_id(id: &str) -> bool {
    id.split('-').all(|word| {
        word.starts_with(|c: char| c.is_ascii_lowercase())
            && word
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> anyhow::Result<Manifest> {
        Manifest::parse(text, "/app/spin.toml".into(), "/app".into())
    }

    fn error_of(text: &str) -> String {
        format!("{:#}", parse(text).unwrap_err())
    }

    const MINIMAL: &str = r#"
spin_manifest_version = 2
[application]
name = "demo"
[[trigger.http]]
route = "/hello/..."
component = "hello"
[component.hello]
source = "hello.wasm"
"#;

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
        let manifest = parse(MINIMAL).unwrap();
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
        let error = error_of(&MINIMAL.replace("source = ", "sorce = \"x\"\nsource = "));
        assert!(error.contains("sorce"), "{error}");
    }

    #[test]
    fn rejects_a_bad_store_label_of_any_component() {
        for label in ["My:Store", ""] {
            let error = error_of(&MINIMAL.replace(
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
        let error = error_of(&MINIMAL.replace("component = \"hello\"", "component = \"nope\""));
        assert!(error.contains("component `nope` is not defined"), "{error}");
    }

    #[test]
    fn rejects_unsupported_capabilities_by_name() {
        let files = MINIMAL.replace(
            "source = \"hello.wasm\"",
            "source = \"hello.wasm\"\nfiles = [\"static/**\"]",
        );
        assert!(error_of(&files).contains("`files`"));
        let sqlite = MINIMAL.replace(
            "source = \"hello.wasm\"",
            "source = \"hello.wasm\"\nsqlite_databases = [\"default\"]",
        );
        assert!(error_of(&sqlite).contains("sqlite_databases"));
        let remote = MINIMAL.replace(
            "source = \"hello.wasm\"",
            "source = { url = \"https://x\", digest = \"sha256:0\" }",
        );
        assert!(error_of(&remote).contains("local `source`"));
    }

    #[test]
    fn rejects_non_http_triggers() {
        let text =
            format!("{MINIMAL}\n[[trigger.redis]]\nchannel = \"c\"\ncomponent = \"hello\"\n");
        assert!(error_of(&text).contains("trigger type `redis` is not supported"));
    }

    #[test]
    fn rejects_reserved_routes_and_accepts_private_ones() {
        let reserved = MINIMAL.replace("/hello/...", "/.well-known/spin/info");
        assert!(error_of(&reserved).contains("reserved"));
        let private = format!(
            "{MINIMAL}\n[[trigger.http]]\nroute = {{ private = true }}\ncomponent = \"hello\"\n"
        );
        let manifest = parse(&private).unwrap();
        assert_eq!(manifest.http_triggers[1].route, None);
    }

    #[test]
    fn adds_the_leading_slash_to_routes() {
        let manifest = parse(&MINIMAL.replace("/hello/...", "hello")).unwrap();
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
