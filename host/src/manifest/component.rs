//! `[component.<id>]`: what one component is and may do.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, bail, ensure};

use super::raw::{Commands, RawBuild, RawComponent};
use super::{BuildConfig, Component};
use crate::outbound::OutboundRule;
use crate::variables::{Definition, Template, check_name};

impl Component {
    /// Checks a component; its templates may name only `variables`.
    pub(super) fn from_raw(
        id: &str,
        raw: RawComponent,
        dir: &Path,
        variables: &BTreeMap<String, Definition>,
    ) -> anyhow::Result<Self> {
        ensure!(
            is_kebab_id(id),
            "component id `{id}` must be kebab-case (lowercase letters, digits, `-`)"
        );
        let source = match &raw.source {
            toml::Value::String(path) => dir.join(path),
            _ => bail!("only a local `source` path is supported, not a URL or registry package"),
        };
        refuse_unsupported(&raw)?;
        let (allowed_outbound_hosts, outbound_templates) =
            outbound_rules(&raw.allowed_outbound_hosts, variables)?;
        check_labels(&raw)?;
        let templates = component_templates(raw.variables, variables)?;
        Ok(Component {
            id: id.to_owned(),
            source,
            environment: raw.environment.into_iter().collect(),
            allowed_outbound_hosts,
            outbound_templates,
            key_value_stores: raw.key_value_stores,
            sqlite_databases: raw.sqlite_databases,
            variables: templates,
            build: raw.build.map(|build| build_config(build, dir)),
        })
    }
}

/// Refuses what hero-host does not support; descriptive or tool-specific
/// fields change nothing at run time.
fn refuse_unsupported(raw: &RawComponent) -> anyhow::Result<()> {
    let unsupported = [
        (raw.files.is_empty(), "`files` (guests get no filesystem)"),
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
    let _ = (
        &raw.description,
        &raw.exclude_files,
        &raw.targets,
        &raw.tool,
        &raw.dependencies_inherit_configuration,
        &raw.profile,
    );
    Ok(())
}

/// Store and database labels must be kebab-case or snake_case.
fn check_labels(raw: &RawComponent) -> anyhow::Result<()> {
    for (kind, labels) in [
        ("key-value store", &raw.key_value_stores),
        ("SQLite database", &raw.sqlite_databases),
    ] {
        for label in labels {
            ensure!(
                crate::kv::is_valid_label(label),
                "{kind} label {label:?} must be kebab-case or snake_case"
            );
        }
    }
    Ok(())
}

/// `[component.x.variables]`, each a checked template over `variables`.
fn component_templates(
    raw: BTreeMap<String, String>,
    variables: &BTreeMap<String, Definition>,
) -> anyhow::Result<BTreeMap<String, Template>> {
    raw.into_iter()
        .map(|(name, text)| {
            check_name(&name).map_err(|why| anyhow::anyhow!("variable {name:?}: {why}"))?;
            let template =
                checked_template(&text, variables).with_context(|| format!("variable `{name}`"))?;
            Ok((name, template))
        })
        .collect()
}

/// The component's `build` section.
fn build_config(build: RawBuild, dir: &Path) -> BuildConfig {
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
}

/// `allowed_outbound_hosts` split into rules and templates.
type OutboundEntries = (Vec<OutboundRule>, Vec<(String, Template)>);

/// The rules without variables, parsed now; those with `{{ variable }}`
/// kept as templates, rendered once the variables have values.
fn outbound_rules(
    entries: &[String],
    variables: &BTreeMap<String, Definition>,
) -> anyhow::Result<OutboundEntries> {
    let mut rules = Vec::new();
    let mut templates = Vec::new();
    for entry in entries {
        let context = || format!("allowed_outbound_hosts entry {entry:?}");
        let template = checked_template(entry, variables).with_context(context)?;
        if template.is_literal() {
            rules.push(OutboundRule::parse(entry).with_context(context)?);
        } else {
            templates.push((entry.clone(), template));
        }
    }
    Ok((rules, templates))
}

/// Parses a template whose variables must all be defined in `[variables]`.
fn checked_template(
    text: &str,
    variables: &BTreeMap<String, Definition>,
) -> anyhow::Result<Template> {
    let template = Template::parse(text)?;
    for name in template.variables() {
        ensure!(
            variables.contains_key(name),
            "refers to `{name}`, which is not defined: add it to [variables]"
        );
    }
    Ok(template)
}

/// Whether `id` is a kebab-case component id.
pub(super) fn is_kebab_id(id: &str) -> bool {
    id.split('-').all(|word| {
        word.starts_with(|c: char| c.is_ascii_lowercase())
            && word
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    })
}
