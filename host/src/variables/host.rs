//! The host side of the interfaces guests read their variables through:
//! `spin:variables/variables@3.0.0` (spin-sdk 7), `wasi:config/store`
//! (2024-09-27 draft) and `fermyon:spin/variables@2.0.0` (spin-sdk 2 to 5).
//! All three read the component's [`ComponentVariables`], resolved at
//! start-up, so a read is a map lookup; the errors are Spin's.

use std::sync::Arc;

use wasmtime::component::{Accessor, HasData, Linker};

use super::{ComponentVariables, Lookup};

mod generated {
    wasmtime::component::bindgen!({
        inline: "
            package hero-host:variables;
            world variables-imports {
                import spin:variables/variables@3.0.0;
                import wasi:config/store@0.2.0-draft-2024-09-27;
                import fermyon:spin/variables@2.0.0;
            }
        ",
        path: ["wit/variables.wit", "wit/config.wit", "wit/spin-v2.wit"],
    });
}

use self::generated::fermyon::spin::variables as v2;
use self::generated::spin::variables::variables as v3;
use self::generated::wasi::config::store as config;

/// The per-call borrow of a component's variables.
pub struct VariablesView<'a>(pub &'a Arc<ComponentVariables>);

/// Implemented by the store data.
pub trait VariablesHostView: Send {
    /// Borrows the component's variables.
    fn variables(&mut self) -> VariablesView<'_>;
}

/// The `HasData` marker of these interfaces.
pub struct Variables;

impl HasData for Variables {
    type Data<'a> = VariablesView<'a>;
}

/// Adds the three interfaces to a linker.
pub fn add_to_linker<T: VariablesHostView + 'static>(
    linker: &mut Linker<T>,
) -> wasmtime::Result<()> {
    v3::add_to_linker::<T, Variables>(linker, T::variables)?;
    config::add_to_linker::<T, Variables>(linker, T::variables)?;
    v2::add_to_linker::<T, Variables>(linker, T::variables)?;
    Ok(())
}

/// Spin's answer to `get(name)`, in the v2 error type.
fn get_v2(variables: &ComponentVariables, name: &str) -> Result<String, v2::Error> {
    match variables.get(name) {
        Lookup::Found(value) => Ok(value.to_owned()),
        Lookup::InvalidName(why) => Err(v2::Error::InvalidName(why)),
        Lookup::Undefined => Err(v2::Error::Undefined(format!(
            "no variable {name:?} for this component: add it to [component.<id>.variables]"
        ))),
    }
}

impl v3::Host for VariablesView<'_> {}

impl<T> v3::HostWithStore<T> for Variables {
    async fn get(accessor: &Accessor<T, Self>, name: String) -> Result<String, v3::Error> {
        let variables = accessor.with(|mut access| access.get().0.clone());
        get_v2(&variables, &name).map_err(|error| match error {
            v2::Error::InvalidName(why) => v3::Error::InvalidName(why),
            v2::Error::Undefined(why) => v3::Error::Undefined(why),
            v2::Error::Provider(why) => v3::Error::Provider(why),
            v2::Error::Other(why) => v3::Error::Other(why),
        })
    }
}

impl v2::Host for VariablesView<'_> {
    fn get(&mut self, name: String) -> Result<String, v2::Error> {
        get_v2(self.0, &name)
    }
}

impl config::Host for VariablesView<'_> {
    fn get(&mut self, key: String) -> Result<Option<String>, config::Error> {
        // As Spin: an unknown or invalid name is "not set", not an error.
        Ok(match self.0.get(&key) {
            Lookup::Found(value) => Some(value.to_owned()),
            Lookup::InvalidName(_) | Lookup::Undefined => None,
        })
    }

    fn get_all(&mut self) -> Result<Vec<(String, String)>, config::Error> {
        Ok(self
            .0
            .all()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect())
    }
}
