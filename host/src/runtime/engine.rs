//! The wasmtime engine (pooling allocator, epoch interruption, call hooks)
//! and the compiled-component cache. Core modules are turned into
//! components before they are compiled (see `componentize`); the cache is
//! keyed by the file's own bytes, so a cached module skips both steps.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use wasmtime::component::Component;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// How often the epoch advances; the granularity of request timeouts.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Builds the engine. `instances` bounds the live instances of all
/// components together (the pooling allocator reserves their slots once);
/// `max_memory` is the hard ceiling of one linear memory.
pub fn engine(instances: u32, max_memory: u64) -> anyhow::Result<Engine> {
    let mut pool = PoolingAllocationConfig::new();
    // A Rust component has a handful of core instances, tables and at most a
    // couple of memories; the totals cover every live instance.
    pool.total_component_instances(instances)
        .total_core_instances(instances * 8)
        .total_memories(instances * 2)
        .total_tables(instances * 4)
        .total_stacks(instances)
        .max_core_instances_per_component(16)
        .max_memories_per_component(2)
        .max_tables_per_component(8)
        .max_memory_size(usize::try_from(max_memory).unwrap_or(usize::MAX))
        .max_unused_warm_slots(instances.min(64));
    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .wasm_component_model_async(true)
        .epoch_interruption(true)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    Engine::new(&config)
        .map_err(anyhow::Error::from)
        .context("configuring the wasmtime engine")
}

/// Advances the engine's epoch every [`EPOCH_TICK`] until dropped.
pub struct EpochTicker {
    stop: Arc<AtomicBool>,
}

impl EpochTicker {
    /// Starts the ticker thread.
    pub fn start(engine: Engine) -> anyhow::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        std::thread::Builder::new()
            .name("hero-host-epoch".into())
            .spawn(move || {
                while !stopped.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })
            .context("starting the epoch thread")?;
        Ok(EpochTicker { stop })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Loads a component, compiling it only when the cache in `cache_dir` has no
/// artifact for these exact bytes and this exact engine. Returns the
/// component and whether the cache served it.
pub fn load_component(
    engine: &Engine,
    wasm_path: &Path,
    cache_dir: &Path,
) -> anyhow::Result<(Component, bool)> {
    let wasm =
        std::fs::read(wasm_path).with_context(|| format!("cannot read {}", wasm_path.display()))?;
    let cached = cache_path(engine, &wasm, wasm_path, cache_dir);
    if let Ok(artifact) = std::fs::read(&cached)
        && matches!(
            Engine::detect_precompiled(&artifact),
            Some(wasmtime::Precompiled::Component)
        )
    {
        // SAFETY: `deserialize` trusts its input to be wasmtime's own output.
        // The file is only ever written below, by this engine configuration,
        // atomically (write then rename), in the host's private state
        // directory; its name includes a hash of the wasm bytes and of the
        // engine's compatibility settings, so a stale artifact is never read.
        #[expect(
            unsafe_code,
            reason = "loading our own precompiled artifact skips compilation at start-up"
        )]
        let component = unsafe { Component::deserialize(engine, &artifact) };
        match component {
            Ok(component) => return Ok((component, true)),
            Err(error) => {
                tracing::warn!(path = %cached.display(), error = %error, "ignoring an unusable compiled-component cache entry")
            }
        }
    }
    let component = if super::componentize::is_core_module(&wasm) {
        std::borrow::Cow::Owned(
            super::componentize::componentize(&wasm)
                .with_context(|| format!("cannot load {}", wasm_path.display()))?,
        )
    } else {
        std::borrow::Cow::Borrowed(&wasm)
    };
    let artifact = engine
        .precompile_component(&component)
        .map_err(anyhow::Error::from)
        .with_context(|| {
            format!(
                "{} is not a valid WebAssembly component",
                wasm_path.display()
            )
        })?;
    if let Err(error) = store_atomically(&cached, &artifact) {
        tracing::warn!(path = %cached.display(), error = %error, "cannot write the compiled-component cache; the next start compiles again");
    }
    // SAFETY: as above; these bytes were produced by this engine just now.
    #[expect(
        unsafe_code,
        reason = "the artifact was produced by this engine a moment ago"
    )]
    let component =
        unsafe { Component::deserialize(engine, &artifact) }.map_err(anyhow::Error::from)?;
    Ok((component, false))
}

fn cache_path(engine: &Engine, wasm: &[u8], wasm_path: &Path, cache_dir: &Path) -> PathBuf {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    wasm.hash(&mut hasher);
    engine.precompile_compatibility_hash().hash(&mut hasher);
    env!("CARGO_PKG_VERSION").hash(&mut hasher);
    let stem = wasm_path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("component");
    cache_dir.join(format!("{stem}-{:016x}.cwasm", hasher.finish()))
}

fn store_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut temp = tempfile::NamedTempFile::new_in(dir)?;
    std::io::Write::write_all(&mut temp, bytes)?;
    temp.persist(path).map_err(|e| e.error)?;
    Ok(())
}
