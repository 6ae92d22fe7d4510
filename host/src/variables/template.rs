//! Spin's `{{ name }}` templates, as written in `[component.<id>.variables]`
//! and `allowed_outbound_hosts`: literal text with variable references.

use anyhow::{bail, ensure};

use super::check_name;

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

/// One piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// Text taken as it is.
    Literal(String),
    /// The value of an application variable.
    Variable(String),
}

impl Template {
    /// Parses `text`; every `{{ name }}` must name a valid variable.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let mut parts = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            match rest.find("{{") {
                Some(0) => {
                    let Some((name, after)) = rest[2..].split_once("}}") else {
                        bail!("unmatched `{{{{` in {text:?}");
                    };
                    let name = name.trim();
                    check_name(name).map_err(|why| {
                        anyhow::anyhow!("invalid variable reference {name:?} in {text:?}: {why}")
                    })?;
                    parts.push(Part::Variable(name.to_owned()));
                    rest = after;
                }
                Some(start) => {
                    parts.push(Part::Literal(rest[..start].to_owned()));
                    rest = &rest[start..];
                }
                None => {
                    parts.push(Part::Literal(rest.to_owned()));
                    rest = "";
                }
            }
        }
        for part in &parts {
            if let Part::Literal(literal) = part {
                ensure!(!literal.contains("}}"), "unmatched `}}}}` in {text:?}");
            }
        }
        Ok(Template { parts })
    }

    /// Its pieces, in order.
    pub fn parts(&self) -> &[Part] {
        &self.parts
    }

    /// The variables it refers to.
    pub fn variables(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|part| match part {
            Part::Variable(name) => Some(name.as_str()),
            Part::Literal(_) => None,
        })
    }

    /// Whether it refers to no variable.
    pub fn is_literal(&self) -> bool {
        self.variables().next().is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_literals_and_variables() {
        let template = Template::parse("https://{{ host }}:{{port}}/x").unwrap();
        assert_eq!(
            template.parts(),
            [
                Part::Literal("https://".into()),
                Part::Variable("host".into()),
                Part::Literal(":".into()),
                Part::Variable("port".into()),
                Part::Literal("/x".into()),
            ]
        );
        assert!(!template.is_literal());
        assert!(Template::parse("plain").unwrap().is_literal());
        assert!(Template::parse("").unwrap().parts().is_empty());
    }

    #[test]
    fn rejects_unmatched_braces_and_bad_names() {
        let error = |text: &str| format!("{:#}", Template::parse(text).unwrap_err());
        assert!(error("a {{ b").contains("unmatched"));
        assert!(error("a }} b").contains("unmatched"));
        assert!(error("{{ Bad }}").contains("invalid variable reference"));
        assert!(error("{{ }}").contains("must not be empty"));
    }
}
