//! The `fermyon:spin/*@2.0.0` interfaces that apps built with spin-sdk 2 to 5
//! import: key-value (on the same stores as `spin:key-value@3.0.0`) and
//! SQLite (on the same databases as `spin:sqlite@3.1.0`). Variables of this
//! generation are with the others, in `crate::variables::host`.

mod key_value;
mod sqlite;

use wasmtime::component::Linker;

use crate::kv::host::{KeyValue, KeyValueHostView};
use crate::sqlite::ctx::SqliteHostView;
use crate::sqlite::host::Sqlite;

mod generated {
    wasmtime::component::bindgen!({
        inline: "
            package hero-host:spin-v2;
            world spin-v2-imports {
                import fermyon:spin/key-value@2.0.0;
                import fermyon:spin/sqlite@2.0.0;
            }
        ",
        path: "wit/spin-v2.wit",
        imports: { default: async | trappable },
        with: {
            "fermyon:spin/key-value.store": crate::kv::host::StoreHandle,
            "fermyon:spin/sqlite.connection": crate::sqlite::host::ConnectionHandle,
        },
    });
}

use self::generated::fermyon::spin::{key_value as kv2, sqlite as sqlite2};

/// Adds the interfaces to a linker, on the same data (and `HasData` markers)
/// as their version 3 counterparts.
pub fn add_to_linker<T: KeyValueHostView + SqliteHostView + 'static>(
    linker: &mut Linker<T>,
) -> wasmtime::Result<()> {
    kv2::add_to_linker::<T, KeyValue>(linker, T::key_value)?;
    sqlite2::add_to_linker::<T, Sqlite>(linker, T::sqlite)?;
    Ok(())
}
