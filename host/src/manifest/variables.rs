//! `[variables]`: the application variables a manifest declares.

use std::collections::BTreeMap;

use anyhow::{Context, bail};

use super::raw::RawVariable;
use crate::variables::{Definition, check_name};

/// Checks every declaration as Spin does: a valid name, and either a
/// default or `required = true`, not both.
pub(super) fn definitions(
    raw: BTreeMap<String, RawVariable>,
) -> anyhow::Result<BTreeMap<String, Definition>> {
    raw.into_iter()
        .map(|(name, variable)| {
            let context = || format!("[variables] {name}");
            check_name(&name)
                .map_err(anyhow::Error::msg)
                .with_context(context)?;
            let _ = variable.description;
            let default = match (variable.required, variable.default) {
                (true, Some(_)) => {
                    bail!("[variables] {name}: a variable is either `required` or has a `default`, not both")
                }
                (false, None) => bail!(
                    "[variables] {name}: give it a `default`, or `required = true` to demand a value at start"
                ),
                (_, default) => default,
            };
            Ok((
                name,
                Definition {
                    default,
                    secret: variable.secret,
                },
            ))
        })
        .collect()
}
