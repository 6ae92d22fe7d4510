//! The contenders: how each server under test is started, on which port, with
//! which settings, and what the load generator adds to its requests.
//!
//! hero-host and the like-for-like `wasmtime serve` get the same guarantees
//! from [`SETTINGS`], passed explicitly to both, so the comparison holds
//! whatever either binary's defaults are.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::run::RunArgs;
use crate::server::Launch;
use crate::spin;

/// Request timeout and instance reuse, the same for every hero-host and for
/// the like-for-like `wasmtime serve`.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// hero-host's `--request-timeout`; `wasmtime serve -Wtimeout` (which also
    /// turns on epoch interruption, the guard that lets a timeout stop a
    /// spinning guest).
    pub request_timeout: &'static str,
    /// Requests one instance serves in its life.
    pub reuse_count: usize,
    /// Requests one instance serves at once.
    pub concurrent_reuse: usize,
    /// How long an idle instance is kept for reuse.
    pub idle_instance_timeout: &'static str,
}

/// hero-host's defaults (and `wasmtime serve`'s, save the timeout it lacks).
pub const SETTINGS: Settings = Settings {
    request_timeout: "30s",
    reuse_count: 128,
    concurrent_reuse: 16,
    idle_instance_timeout: "1s",
};

impl Settings {
    /// The instance-reuse flags, spelled the same by both runtimes.
    fn reuse_args(&self) -> Vec<String> {
        vec![
            "--max-instance-reuse-count".into(),
            self.reuse_count.to_string(),
            "--max-instance-concurrent-reuse-count".into(),
            self.concurrent_reuse.to_string(),
            "--idle-instance-timeout".into(),
            self.idle_instance_timeout.into(),
        ]
    }
}

/// What a contender serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Serves {
    /// The Hero Registry.
    Registry,
    /// A hello component (or the bare hyper hello).
    Hello,
}

/// One server configuration under test.
#[derive(Debug, Clone)]
pub struct Contender {
    /// Short key (for `BENCH_ONLY` and the JSON).
    pub key: &'static str,
    /// What the table calls it.
    pub label: String,
    /// What it serves.
    pub serves: Serves,
    /// Whether the other rows of its scenarios are compared with this one.
    pub reference: bool,
    /// How to start it.
    pub launch: Launch,
    /// The `/metrics` endpoint to scrape under load, if it has one.
    pub metrics: Option<SocketAddr>,
    /// Its state directory, emptied before the first start (cold), kept for
    /// the warm starts; `None` when it has no state.
    pub state_dir: Option<PathBuf>,
    /// Extra arguments of `hero-bench load` (headers it must send).
    pub load_args: Vec<String>,
}

/// Makes the contenders of one run: ports in order from the base, manifests
/// and logs in the scratch directory.
pub struct Builder<'a> {
    args: &'a RunArgs,
    scratch: &'a Path,
    exe: &'a Path,
    next_port: u16,
    registry_manifest: PathBuf,
    hello_manifest: PathBuf,
}

impl<'a> Builder<'a> {
    /// Writes the two manifests into `scratch`.
    pub fn new(args: &'a RunArgs, scratch: &'a Path, exe: &'a Path) -> anyhow::Result<Self> {
        let registry_manifest = scratch.join("registry.spin.toml");
        std::fs::write(
            &registry_manifest,
            manifest(
                "hero-registry",
                &args.registry_wasm.canonicalize()?,
                &["/", "/heroes", "/heroes/:id"],
                true,
            ),
        )?;
        let hello_manifest = scratch.join("hello.spin.toml");
        std::fs::write(
            &hello_manifest,
            manifest("hello", &args.hello_wasm.canonicalize()?, &["/..."], false),
        )?;
        Ok(Builder {
            args,
            scratch,
            exe,
            next_port: args.port_base,
            registry_manifest,
            hello_manifest,
        })
    }

    /// The next free address: each contender takes ten ports.
    pub fn next_addr(&mut self) -> SocketAddr {
        let addr = ([127, 0, 0, 1], self.next_port).into();
        self.next_port += 10;
        addr
    }

    fn stdout(&self, key: &str) -> Option<PathBuf> {
        (self.args.log_sink == "file").then(|| self.scratch.join(format!("{key}.log")))
    }

    fn launch(&self, key: &str, program: PathBuf, args: Vec<String>, listen: SocketAddr) -> Launch {
        Launch {
            program,
            args,
            env: Vec::new(),
            stdout: self.stdout(key),
            stderr: self.scratch.join(format!("{key}.stderr")),
            listen,
        }
    }

    /// `hero-host up` serving the registry or hello, with [`SETTINGS`];
    /// `telemetry` false turns metrics and logs off.
    pub fn hero_host(
        &mut self,
        key: &'static str,
        label: &str,
        serves: Serves,
        telemetry: bool,
    ) -> Contender {
        let listen = self.next_addr();
        let admin: SocketAddr = ([127, 0, 0, 1], listen.port() + 1).into();
        let state_dir = self.scratch.join(format!("state-{key}"));
        let manifest = match serves {
            Serves::Registry => &self.registry_manifest,
            Serves::Hello => &self.hello_manifest,
        };
        let args = hero_host_args(manifest, listen, admin, &state_dir, telemetry);
        Contender {
            key,
            label: label.into(),
            serves,
            reference: telemetry,
            launch: self.launch(key, self.args.hero_host.clone(), args, listen),
            metrics: telemetry.then_some(admin),
            state_dir: Some(state_dir),
            load_args: Vec::new(),
        }
    }

    /// The FastAPI registry, when its venv's python is there.
    pub fn fastapi(&mut self) -> anyhow::Result<Option<Contender>> {
        let listen = self.next_addr();
        let Some(python) = self.args.python.clone().filter(|p| p.exists()) else {
            return Ok(None);
        };
        let args = vec![
            self.args.fastapi_app.canonicalize()?.display().to_string(),
            "--host".into(),
            "127.0.0.1".into(),
            "--port".into(),
            listen.port().to_string(),
        ];
        let mut launch = self.launch("fastapi", python, args, listen);
        launch.env.push(("PYTHONUNBUFFERED".into(), "0".into()));
        Ok(Some(Contender {
            key: "fastapi",
            label: "FastAPI + uvicorn (in memory)".into(),
            serves: Serves::Registry,
            reference: false,
            launch,
            metrics: Some(listen),
            state_dir: None,
            load_args: Vec::new(),
        }))
    }

    /// `wasmtime serve` on the hello component: `like_for_like` adds hero-host's
    /// guarantees ([`SETTINGS`]) and has the load send the `spin-*` headers
    /// hero-host gives its guest. `None` when `wasmtime` is not installed.
    pub fn wasmtime(&mut self, like_for_like: bool) -> anyhow::Result<Option<Contender>> {
        let listen = self.next_addr();
        let Some(wasmtime) = self.args.wasmtime.clone().filter(|p| p.exists()) else {
            return Ok(None);
        };
        let wasm = self.args.hello_wasm.canonicalize()?;
        let (key, label, args, load_args) = if like_for_like {
            let args = wasmtime_serve_args(listen, &wasm, Some(&SETTINGS));
            let load_args = spin::load_args(&spin::hello_headers(listen));
            let label = "wasmtime serve hello-p3 (like-for-like)";
            ("hello-wasmtime-like", label, args, load_args)
        } else {
            let args = wasmtime_serve_args(listen, &wasm, None);
            let label = "wasmtime serve hello-p3 (plain)";
            ("hello-wasmtime", label, args, Vec::new())
        };
        Ok(Some(Contender {
            key,
            label: label.into(),
            serves: Serves::Hello,
            reference: false,
            launch: self.launch(key, wasmtime, args, listen),
            metrics: None,
            state_dir: None,
            load_args,
        }))
    }

    /// `hero-bench hello`: bare hyper, the ceiling.
    pub fn hyper(&mut self) -> Contender {
        let listen = self.next_addr();
        let args = vec!["hello".into(), "--listen".into(), listen.to_string()];
        let mut launch = self.launch("hello-hyper", self.exe.to_owned(), args, listen);
        launch.stdout = None;
        Contender {
            key: "hello-hyper",
            label: "bare hyper hello (ceiling)".into(),
            serves: Serves::Hello,
            reference: false,
            launch,
            metrics: None,
            state_dir: None,
            load_args: Vec::new(),
        }
    }
}

/// `hero-host up` flags: [`SETTINGS`] always, telemetry off when asked.
pub fn hero_host_args(
    manifest: &Path,
    listen: SocketAddr,
    admin: SocketAddr,
    state_dir: &Path,
    telemetry: bool,
) -> Vec<String> {
    let mut args = vec![
        "up".to_owned(),
        "-f".into(),
        manifest.display().to_string(),
        "--listen".into(),
        listen.to_string(),
        "--admin-listen".into(),
        admin.to_string(),
        "--state-dir".into(),
        state_dir.display().to_string(),
        "--request-timeout".into(),
        SETTINGS.request_timeout.into(),
    ];
    args.extend(SETTINGS.reuse_args());
    if !telemetry {
        args.extend(["--metrics", "off", "--log-format", "off"].map(String::from));
    }
    args
}

/// `wasmtime serve` flags for a spin-sdk 7 WASIp3 component: it imports
/// WASIp2 `cli` (stdout, environment) and WASIp3 `http` (`-Sp3` also turns on
/// the component-model async features). With `settings`, the same timeout and
/// reuse as hero-host; without, `wasmtime serve`'s own defaults.
pub fn wasmtime_serve_args(
    addr: SocketAddr,
    wasm: &Path,
    settings: Option<&Settings>,
) -> Vec<String> {
    let mut args = vec![
        "serve".into(),
        "--addr".into(),
        addr.to_string(),
        "-Scli".into(),
        "-Sp3".into(),
    ];
    if let Some(settings) = settings {
        args.push(format!("-Wtimeout={}", settings.request_timeout));
        args.extend(settings.reuse_args());
    }
    args.push(wasm.display().to_string());
    args
}

/// A Spin manifest serving `wasm` as component `name` on `routes`.
pub fn manifest(name: &str, wasm: &Path, routes: &[&str], key_value: bool) -> String {
    let mut text = format!(
        "spin_manifest_version = 2\n\n[application]\nname = \"{name}\"\nversion = \"0.1.0\"\n\n"
    );
    for route in routes {
        text += &format!("[[trigger.http]]\nroute = \"{route}\"\ncomponent = \"{name}\"\n\n");
    }
    text += &format!("[component.{name}]\nsource = \"{}\"\n", wasm.display());
    if key_value {
        text += "key_value_stores = [\"default\"]\n";
    }
    text += "allowed_outbound_hosts = []\n";
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value following `flag` in `args`.
    fn value<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
        let at = args.iter().position(|a| a == flag)?;
        args.get(at + 1).map(String::as_str)
    }

    #[test]
    fn hero_host_and_like_for_like_wasmtime_get_the_same_guarantees() {
        let addr: SocketAddr = ([127, 0, 0, 1], 18080).into();
        let host = hero_host_args(Path::new("spin.toml"), addr, addr, Path::new("s"), true);
        let like = wasmtime_serve_args(addr, Path::new("hello.wasm"), Some(&SETTINGS));
        for flag in [
            "--max-instance-reuse-count",
            "--max-instance-concurrent-reuse-count",
            "--idle-instance-timeout",
        ] {
            assert!(value(&host, flag).is_some(), "{flag}");
            assert_eq!(value(&host, flag), value(&like, flag), "{flag}");
        }
        assert_eq!(
            value(&host, "--max-instance-concurrent-reuse-count"),
            Some("16")
        );
        assert_eq!(value(&host, "--max-instance-reuse-count"), Some("128"));
        assert_eq!(value(&host, "--request-timeout"), Some("30s"));
        assert!(like.contains(&"-Wtimeout=30s".to_owned()));
        assert_eq!(like.last().map(String::as_str), Some("hello.wasm"));
    }

    #[test]
    fn plain_wasmtime_keeps_its_own_defaults() {
        let addr: SocketAddr = ([127, 0, 0, 1], 18080).into();
        let plain = wasmtime_serve_args(addr, Path::new("hello.wasm"), None);
        assert_eq!(
            plain,
            [
                "serve",
                "--addr",
                "127.0.0.1:18080",
                "-Scli",
                "-Sp3",
                "hello.wasm"
            ]
        );
    }

    #[test]
    fn telemetry_off_turns_off_metrics_and_logs() {
        let addr: SocketAddr = ([127, 0, 0, 1], 18080).into();
        let off = hero_host_args(Path::new("spin.toml"), addr, addr, Path::new("s"), false);
        assert_eq!(value(&off, "--metrics"), Some("off"));
        assert_eq!(value(&off, "--log-format"), Some("off"));
        let on = hero_host_args(Path::new("spin.toml"), addr, addr, Path::new("s"), true);
        assert_eq!(value(&on, "--metrics"), None);
    }

    #[test]
    fn manifest_points_at_the_wasm_with_its_routes() {
        let text = manifest("hello", Path::new("/abs/hello.wasm"), &["/..."], false);
        assert!(text.contains("route = \"/...\"\ncomponent = \"hello\""));
        assert!(text.contains("source = \"/abs/hello.wasm\""));
        assert!(!text.contains("key_value_stores"));
    }
}
