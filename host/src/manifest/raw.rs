//! `spin.toml` as written: the serde types the manifest is read into before
//! it is checked. Every table refuses unknown fields, so a typo is an error,
//! not a silently ignored setting.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use super::Application;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawManifest {
    pub(super) spin_manifest_version: toml::Value,
    pub(super) application: Application,
    #[serde(default)]
    pub(super) variables: BTreeMap<String, RawVariable>,
    #[serde(default, rename = "trigger")]
    pub(super) triggers: BTreeMap<String, toml::Value>,
    #[serde(default, rename = "component")]
    pub(super) components: BTreeMap<String, RawComponent>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawVariable {
    #[serde(default)]
    pub(super) description: Option<String>,
    #[serde(default)]
    pub(super) required: bool,
    pub(super) default: Option<String>,
    #[serde(default)]
    pub(super) secret: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHttpTrigger {
    #[serde(default)]
    pub(super) id: String,
    pub(super) route: Option<RawRoute>,
    pub(super) component: Option<toml::Value>,
    #[serde(default)]
    pub(super) components: toml::Table,
    pub(super) executor: Option<toml::Table>,
}

#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum RawRoute {
    Path(String),
    Private { private: bool },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawComponent {
    pub(super) source: toml::Value,
    #[serde(default)]
    pub(super) description: String,
    #[serde(default)]
    pub(super) variables: BTreeMap<String, String>,
    #[serde(default)]
    pub(super) environment: BTreeMap<String, String>,
    #[serde(default)]
    pub(super) files: Vec<toml::Value>,
    #[serde(default)]
    pub(super) exclude_files: Vec<String>,
    #[serde(default)]
    pub(super) allowed_http_hosts: Vec<String>,
    #[serde(default)]
    pub(super) allowed_outbound_hosts: Vec<String>,
    #[serde(default)]
    pub(super) key_value_stores: Vec<String>,
    #[serde(default)]
    pub(super) sqlite_databases: Vec<String>,
    #[serde(default)]
    pub(super) ai_models: Vec<String>,
    pub(super) targets: Option<Vec<toml::Value>>,
    pub(super) build: Option<RawBuild>,
    #[serde(default)]
    pub(super) tool: toml::Table,
    pub(super) dependencies_inherit_configuration: Option<bool>,
    #[serde(default)]
    pub(super) dependencies: toml::Table,
    #[serde(default)]
    pub(super) profile: toml::Table,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBuild {
    pub(super) command: Commands,
    pub(super) workdir: Option<PathBuf>,
    #[serde(default)]
    pub(super) watch: Vec<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum Commands {
    One(String),
    Many(Vec<String>),
}
