//! The applications tests run: guest components built for wasm32-wasip2,
//! and temporary application directories with their manifests.

use std::path::{Path, PathBuf};

/// The wasm file of a guest crate (`hero_registry`, `hello_p2`, `hello_p3`,
/// `chaos`), built for wasm32-wasip2 in release.
pub fn wasm(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let path = target
        .join("wasm32-wasip2/release")
        .join(format!("{name}.wasm"));
    assert!(
        path.is_file(),
        "{} is missing: build the guest components first with \
         `cargo build --target wasm32-wasip2 --release -p hero-registry -p hello-p2 -p hello-p3 -p chaos` \
         (README's test command does it)",
        path.display()
    );
    path
}

/// A temporary application directory with a manifest.
pub struct AppDir {
    /// Holds the directory.
    pub dir: tempfile::TempDir,
}

impl AppDir {
    /// A directory with `spin.toml` holding `manifest`; `{registry}`,
    /// `{hello_p2}`, `{hello_p3}` and `{chaos}` become the wasm paths.
    pub fn new(manifest: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let text = manifest
            .replace("{registry}", &wasm("hero_registry").display().to_string())
            .replace("{hello_p2}", &wasm("hello_p2").display().to_string())
            .replace("{hello_p3}", &wasm("hello_p3").display().to_string())
            .replace("{chaos}", &wasm("chaos").display().to_string());
        std::fs::write(dir.path().join("spin.toml"), text).expect("write manifest");
        AppDir { dir }
    }

    /// The project's own `spin.toml`, pointed at the built component.
    pub fn registry() -> Self {
        Self::new(&registry_manifest())
    }

    /// A file in the directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes a file in the directory.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, text).expect("write file");
        path
    }
}

/// The project's own `spin.toml`, its component's source replaced by the
/// `{registry}` placeholder: the one source of the registry's manifest.
pub fn registry_manifest() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../spin.toml");
    let text = std::fs::read_to_string(&path).expect("the repository's spin.toml");
    let built = "\"target/wasm32-wasip2/release/hero_registry.wasm\"";
    assert!(
        text.contains(built),
        "spin.toml no longer names {built}: update the test support"
    );
    text.replace(built, "\"{registry}\"")
}

/// The registry plus the chaos guest on `/chaos/...`, for tests that need a
/// guest to misbehave beside a healthy one.
pub fn registry_and_chaos_manifest() -> String {
    let chaos = http_component(
        "/chaos/...",
        "chaos",
        "{chaos}",
        r#"key_value_stores = ["default"]"#,
    );
    registry_manifest() + "\n" + &chaos
}

/// A manifest of the app `name` holding `body`: its triggers and components
/// (as [`http_component`] writes them) and any other tables.
pub fn app_manifest(name: &str, body: &str) -> String {
    format!(
        r#"
spin_manifest_version = 2
[application]
name = "{name}"
{body}"#
    )
}

/// An HTTP trigger on `route` for the component `id`, then that component's
/// table: `source` (a path, or a placeholder [`AppDir::new`] fills in), then
/// the `settings` lines, last, so that more may be appended to the table.
pub fn http_component(route: &str, id: &str, source: &str, settings: &str) -> String {
    format!(
        r#"[[trigger.http]]
route = "{route}"
component = "{id}"
[component.{id}]
source = "{source}"
{settings}
"#
    )
}
