//! What components use by label (key-value stores, SQLite databases): each
//! label a component uses opened once at start-up, then found by label.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use anyhow::bail;

/// How a kind of labeled resource is named in errors.
pub struct Kind {
    /// What a component uses (`key-value store`).
    pub noun: &'static str,
    /// The runtime config table that defines one (`key_value_store`).
    pub table: &'static str,
}

/// One opened resource per label.
pub struct ByLabel<T> {
    by_label: HashMap<String, Arc<T>>,
}

impl<T> Default for ByLabel<T> {
    fn default() -> Self {
        ByLabel {
            by_label: HashMap::new(),
        }
    }
}

impl<T> Clone for ByLabel<T> {
    fn clone(&self) -> Self {
        ByLabel {
            by_label: self.by_label.clone(),
        }
    }
}

impl<T> ByLabel<T> {
    /// Opens with `open` the resource of every label in `used` (component,
    /// label), once per label; labels no component uses are not opened. A
    /// label `configs` does not define is an error naming the component.
    pub fn open_each<'a, C>(
        kind: Kind,
        configs: &BTreeMap<String, C>,
        used: impl IntoIterator<Item = (&'a str, &'a str)>,
        mut open: impl FnMut(&str, &C) -> anyhow::Result<T>,
    ) -> anyhow::Result<Self> {
        let mut by_label = HashMap::new();
        for (component, label) in used {
            if by_label.contains_key(label) {
                continue;
            }
            let Some(config) = configs.get(label) else {
                let Kind { noun, table } = kind;
                bail!(
                    "component `{component}` uses {noun} `{label}`, which is not defined: \
                     add [{table}.{label}] to the runtime config file"
                );
            };
            by_label.insert(label.to_owned(), Arc::new(open(label, config)?));
        }
        Ok(ByLabel { by_label })
    }

    /// The resource of `label`, if it was opened.
    pub fn get(&self, label: &str) -> Option<&Arc<T>> {
        self.by_label.get(label)
    }

    /// Every opened resource, in label order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<T>> {
        let mut all: Vec<_> = self.by_label.iter().collect();
        all.sort_by(|a, b| a.0.cmp(b.0));
        all.into_iter().map(|(_, resource)| resource)
    }
}
