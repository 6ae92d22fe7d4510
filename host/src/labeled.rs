//! What components use by label (key-value stores, SQLite databases): each
//! label a component uses opened once at start-up, then found by label.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::bail;

/// How a kind of labeled resource is named in errors.
pub struct Kind {
    /// What a component uses (`key-value store`).
    pub noun: &'static str,
    /// The runtime config table that defines one (`key_value_store`).
    pub table: &'static str,
}

/// One opened resource per label, kept in label order.
pub struct ByLabel<T> {
    by_label: BTreeMap<String, Arc<T>>,
}

impl<T> Default for ByLabel<T> {
    fn default() -> Self {
        ByLabel {
            by_label: BTreeMap::new(),
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
        let mut by_label = BTreeMap::new();
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
        self.by_label.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KIND: Kind = Kind {
        noun: "key-value store",
        table: "key_value_store",
    };

    #[test]
    fn each_used_label_is_opened_once_and_listed_in_label_order() {
        let configs: BTreeMap<String, u32> =
            [("b".into(), 2), ("a".into(), 1), ("unused".into(), 9)].into();
        let mut opened = Vec::new();
        let used = [("web", "b"), ("api", "a"), ("api", "b")];
        let all = ByLabel::open_each(KIND, &configs, used, |label, config| {
            opened.push(label.to_owned());
            Ok(*config * 10)
        })
        .unwrap();
        assert_eq!(opened, ["b", "a"]);
        assert_eq!(all.iter().map(|v| **v).collect::<Vec<_>>(), [10, 20]);
        assert_eq!(all.get("b").map(|v| **v), Some(20));
        assert!(all.get("unused").is_none());
    }

    #[test]
    fn an_undefined_label_names_the_component_and_the_table_to_add() {
        let configs: BTreeMap<String, u32> = BTreeMap::new();
        let error = ByLabel::open_each(KIND, &configs, [("web", "cache")], |_, c| Ok(*c))
            .err()
            .unwrap();
        assert_eq!(
            error.to_string(),
            "component `web` uses key-value store `cache`, which is not defined: \
             add [key_value_store.cache] to the runtime config file"
        );
    }
}
