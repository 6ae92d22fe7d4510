//! Core WebAssembly modules as spin-sdk 2 to 5 and TinyGo build Spin apps
//! (`wasm32-wasip1`, with the component type of their Spin world embedded
//! by wit-bindgen) become components at load, as Spin does: `wit-component`
//! wraps the module and adapts its WASI preview 1 imports to WASI 0.2 with
//! the adapter wasmtime publishes for its own version.
//!
//! Modules from wit-bindgen before 0.5 (Spin 1 apps, spin-sdk 1) carry no
//! component type and are refused with that explanation.

use anyhow::Context;
use wasi_preview1_component_adapter_provider::{
    WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME, WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
};

/// Whether `wasm` is a core module (not a component).
pub fn is_core_module(wasm: &[u8]) -> bool {
    wasmparser::Parser::is_core_wasm(wasm)
}

/// The component of a core module: the module's own imports and exports
/// (from its embedded component type), its WASI preview 1 calls adapted.
pub fn componentize(module: &[u8]) -> anyhow::Result<Vec<u8>> {
    wit_component::ComponentEncoder::default()
        .validate(true)
        .module(module)
        .context(
            "it is a core WebAssembly module without a usable component type: modules built \
             with spin-sdk 2 or later (wit-bindgen 0.5 or later) are supported, Spin 1 \
             modules are not",
        )?
        .adapter(
            WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME,
            WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
        )
        .context("adapting its WASI preview 1 imports")?
        .encode()
        .context(
            "turning the core module into a component (modules built with spin-sdk 2 or \
             later are supported; Spin 1 modules, whose imports have no component type, are not)",
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A core module with no component type.
    const BARE_MODULE: &[u8] = b"\0asm\x01\0\0\0";

    /// A core module as Spin 1 builds them: an import (`spin-config`'s
    /// `get-config`, a `func()`) that no component type describes.
    const SPIN_1_MODULE: &[u8] =
        b"\0asm\x01\0\0\0\x01\x04\x01\x60\0\0\x02\x1a\x01\x0bspin-config\x0aget-config\0\0";

    #[test]
    fn tells_core_modules_from_components() {
        assert!(is_core_module(BARE_MODULE));
        assert!(!is_core_module(b"\0asm\x0d\0\x01\0"));
        assert!(!is_core_module(b"not wasm"));
    }

    #[test]
    fn a_module_without_a_component_type_is_refused_with_the_reason() {
        let error = format!("{:#}", componentize(SPIN_1_MODULE).unwrap_err());
        assert!(error.contains("spin-sdk 2 or later"), "{error}");
    }
}
