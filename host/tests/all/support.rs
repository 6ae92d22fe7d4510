//! Test support: the real `hero-host` binary on port 0 with real components,
//! its stdout captured line by line, killed when the test ends.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

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
        Self::new(REGISTRY_MANIFEST)
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

/// The registry's manifest, as in the repository but with an absolute source.
pub const REGISTRY_MANIFEST: &str = r#"
spin_manifest_version = 2
[application]
name = "hero-registry"
version = "0.1.0"
[[trigger.http]]
route = "/"
component = "hero-registry"
[[trigger.http]]
route = "/heroes"
component = "hero-registry"
[[trigger.http]]
route = "/heroes/:id"
component = "hero-registry"
[component.hero-registry]
source = "{registry}"
key_value_stores = ["default"]
"#;

/// The registry plus the chaos guest on `/chaos/...`, for tests that need a
/// guest to misbehave beside a healthy one.
pub const REGISTRY_AND_CHAOS_MANIFEST: &str = r#"
spin_manifest_version = 2
[application]
name = "hero-registry"
[[trigger.http]]
route = "/"
component = "hero-registry"
[[trigger.http]]
route = "/heroes"
component = "hero-registry"
[[trigger.http]]
route = "/heroes/:id"
component = "hero-registry"
[[trigger.http]]
route = "/chaos/..."
component = "chaos"
[component.hero-registry]
source = "{registry}"
key_value_stores = ["default"]
[component.chaos]
source = "{chaos}"
key_value_stores = ["default"]
"#;

/// A running `hero-host up`.
pub struct Host {
    child: Child,
    /// The public address.
    pub addr: SocketAddr,
    /// The admin address.
    pub admin: SocketAddr,
    lines: Arc<Mutex<Vec<String>>>,
    paused: Arc<std::sync::atomic::AtomicBool>,
}

/// Starts `hero-host up -f <dir>/spin.toml` on port 0 with `args` added, and
/// waits until it serves.
pub fn start(app: &AppDir, args: &[&str]) -> Host {
    try_start(app, args).unwrap_or_else(|failure| panic!("hero-host did not start: {failure}"))
}

/// As [`start`], with environment variables set for the host (the test's own
/// `HERO_HOST_*` variables are never passed on).
pub fn start_with_env(app: &AppDir, args: &[&str], env: &[(&str, &str)]) -> Host {
    let mut command = command(app, args);
    command.envs(env.iter().copied());
    spawn(command).unwrap_or_else(|failure| panic!("hero-host did not start: {failure}"))
}

/// As [`start`], run through `wrapper` (a program that execs the rest of
/// its arguments, such as `prlimit --nofile=...  --`).
pub fn start_wrapped(app: &AppDir, args: &[&str], wrapper: &[&str]) -> Host {
    let inner = command(app, args);
    let mut wrapped = Command::new(wrapper[0]);
    wrapped
        .args(&wrapper[1..])
        .arg(inner.get_program())
        .args(inner.get_args());
    for (name, value) in inner.get_envs() {
        match value {
            Some(value) => wrapped.env(name, value),
            None => wrapped.env_remove(name),
        };
    }
    spawn(wrapped).unwrap_or_else(|failure| panic!("hero-host did not start: {failure}"))
}

/// As [`start`], but returns the exit status and output if it fails to start.
pub fn try_start(app: &AppDir, args: &[&str]) -> Result<Host, String> {
    spawn(command(app, args))
}

/// Spawns a `hero-host up` command and waits until it serves.
fn spawn(mut command: Command) -> Result<Host, String> {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn hero-host");
    let lines = Arc::new(Mutex::new(Vec::new()));
    let stderr = Arc::new(Mutex::new(String::new()));
    let paused = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    {
        let stdout = child.stdout.take().unwrap();
        let lines = lines.clone();
        let paused = paused.clone();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            loop {
                while paused.load(std::sync::atomic::Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(10));
                }
                let mut line = String::new();
                match reader.read_line(&mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                let line = line.trim_end_matches('\n').to_owned();
                if let Some(addresses) = serving_addresses(&line) {
                    let _ = ready_tx.send(addresses);
                }
                lines.lock().unwrap().push(line);
            }
        });
    }
    {
        let mut pipe = child.stderr.take().unwrap();
        let stderr = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                stderr
                    .lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok((addr, admin)) = ready_rx.recv_timeout(Duration::from_millis(50)) {
            return Ok(Host {
                child,
                addr,
                admin,
                lines,
                paused,
            });
        }
        if let Some(status) = child.try_wait().unwrap() {
            std::thread::sleep(Duration::from_millis(100));
            return Err(format!(
                "exited with {status}\nstderr:\n{}\nstdout:\n{}",
                stderr.lock().unwrap(),
                lines.lock().unwrap().join("\n")
            ));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return Err("did not serve within 120 s".into());
        }
    }
}

/// The bound addresses from the "serving" line (JSON or pretty).
fn serving_addresses(line: &str) -> Option<(SocketAddr, SocketAddr)> {
    if line.starts_with('{') {
        let serving: Value = serde_json::from_str(line).ok()?;
        if serving["message"] != "serving" {
            return None;
        }
        let address = serving["address"].as_str()?.parse().ok()?;
        let admin = serving["admin_address"].as_str()?.parse().ok()?;
        return Some((address, admin));
    }
    if !line.contains(" serving ") {
        return None;
    }
    let field = |name: &str| {
        line.split_whitespace()
            .find_map(|word| word.strip_prefix(name))
            .and_then(|value| value.parse().ok())
    };
    Some((field("address=")?, field("admin_address=")?))
}

/// Whether a parsed log line is an invocation line (one per request).
pub fn is_invocation(line: &Value) -> bool {
    line["target"] == "hero_host::request"
}

/// The `hero-host up` command for an app directory, ports 0.
pub fn command(app: &AppDir, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_hero-host"));
    command.arg("up").arg("-f").arg(app.path("spin.toml"));
    for (flag, default) in [
        ("--listen", "127.0.0.1:0"),
        ("--admin-listen", "127.0.0.1:0"),
    ] {
        if !args.contains(&flag) {
            command.args([flag, default]);
        }
    }
    command
        .arg("--state-dir")
        .arg(app.path("state"))
        .args(args)
        .env_remove("RUST_LOG");
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("HERO_HOST_") {
            command.env_remove(name);
        }
    }
    command
}

/// Runs `hero-host` with `args` to completion (for start-up failures).
pub fn run_to_exit(app: &AppDir, args: &[&str]) -> (ExitStatus, String, String) {
    let output = command(app, args).output().expect("run hero-host");
    (
        output.status,
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

impl Host {
    /// `http://<addr><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `http://<admin><path>`.
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin)
    }

    /// Every stdout line so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Every stdout line so far, parsed (panics on a line that is not JSON).
    pub fn json_lines(&self) -> Vec<Value> {
        self.lines()
            .iter()
            .map(|line| {
                serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"))
            })
            .collect()
    }

    /// Invocation lines (one per request) so far.
    pub fn invocations(&self) -> Vec<Value> {
        self.json_lines()
            .into_iter()
            .filter(is_invocation)
            .collect()
    }

    /// Waits until there are at least `count` invocation lines; returns them.
    pub fn wait_for_invocations(&self, count: usize) -> Vec<Value> {
        let lines = self.wait_for_lines(&format!("{count} invocation lines"), |lines| {
            lines.iter().filter(|l| is_invocation(l)).count() >= count
        });
        lines.into_iter().filter(is_invocation).collect()
    }

    /// The host's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The admin port's Prometheus text.
    pub fn metrics_text(&self) -> String {
        get(&self.admin_url("/metrics")).body
    }

    /// The sum of the samples whose line starts with `prefix` and contains
    /// `filter` (0 when there are none).
    pub fn metric_sum(&self, prefix: &str, filter: &str) -> f64 {
        self.metrics_text()
            .lines()
            .filter(|l| l.starts_with(prefix) && l.contains(filter))
            .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
            .sum()
    }

    /// Waits until `predicate` holds for the parsed lines, or panics.
    pub fn wait_for_lines(&self, what: &str, predicate: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let lines = self.json_lines();
            if predicate(&lines) {
                return lines;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; lines:\n{}",
                self.lines().join("\n")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the first line that `matches`, and returns it.
    pub fn wait_for_line(&self, what: &str, matches: impl Fn(&Value) -> bool) -> Value {
        let lines = self.wait_for_lines(what, |lines| lines.iter().any(&matches));
        lines.into_iter().find(|l| matches(l)).expect("just seen")
    }

    /// Stops (or resumes) reading the host's stdout, as a slow collector would.
    pub fn pause_stdout(&self, paused: bool) {
        self.paused
            .store(paused, std::sync::atomic::Ordering::SeqCst);
    }

    /// Sends a signal (`TERM`, `INT`, `KILL`).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -{name} failed");
    }

    /// Waits for the process to exit.
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // Let the reader threads take the last lines.
                std::thread::sleep(Duration::from_millis(100));
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "hero-host did not exit within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Resident memory (kB), from /proc.
    pub fn rss_kb(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap()
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP agent that returns 4xx/5xx responses instead of failing.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

/// A response, read whole.
#[derive(Debug)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Headers, lowercase names.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: String,
}

impl Reply {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.body))
    }
}

/// Sends a request with `ureq`.
pub fn send(agent: &ureq::Agent, method: &str, url: &str, body: Option<&str>) -> Reply {
    let request = http::Request::builder().method(method).uri(url);
    let response = match body {
        Some(body) => agent.run(
            request
                .header("content-type", "application/json")
                .body(body.to_owned())
                .unwrap(),
        ),
        None => agent.run(request.body(()).unwrap()),
    }
    .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body = response.into_body().read_to_string().unwrap_or_default();
    Reply {
        status,
        headers,
        body,
    }
}

/// GET with a fresh agent.
pub fn get(url: &str) -> Reply {
    send(&agent(), "GET", url, None)
}

/// Sends raw bytes on a new connection and reads until the server closes it
/// (or `timeout`); for requests an HTTP client would refuse to send.
pub fn raw_exchange(addr: SocketAddr, request: &[u8], timeout: Duration) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(timeout)).unwrap();
    stream.write_all(request).unwrap();
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    response
}

/// The status code of a raw HTTP/1.1 response.
pub fn raw_status(response: &[u8]) -> u16 {
    let text = String::from_utf8_lossy(response);
    text.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// Polls `done` every 5 ms until it holds; fails naming `what` after
/// `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Finds a system tool, or fails saying how to install it.
pub fn tool(name: &str, package: &str) -> PathBuf {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join(name))
        .find(|path| path.is_file());
    found.unwrap_or_else(|| {
        panic!("`{name}` is not installed: `apt-get install {package}` (CI installs it in .ci/run)")
    })
}

/// A free loopback port (bound then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A real Prometheus server, killed when dropped.
pub struct Prometheus {
    child: Child,
    /// Its HTTP address.
    pub addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts Prometheus scraping `/metrics` of `targets` every second, and
    /// waits until it is ready.
    pub fn start(targets: &[SocketAddr]) -> Self {
        let targets: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        Self::with_config(|_| {
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: hero-host\n    metrics_path: /metrics\n    static_configs:\n      - targets: [{}]\n",
                targets.join(", ")
            )
        })
    }

    /// Starts Prometheus with the configuration `config` returns; it is given
    /// Prometheus's own directory, for files the configuration refers to.
    pub fn with_config(config: impl FnOnce(&Path) -> String) -> Self {
        let binary = tool("prometheus", "prometheus");
        let dir = tempfile::tempdir().unwrap();
        let config_file = dir.path().join("prometheus.yml");
        std::fs::write(&config_file, config(dir.path())).unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config_file.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start prometheus");
        let prometheus = Prometheus { child, addr, dir };
        let agent = agent();
        prometheus.wait("ready", || {
            send_quietly(&agent, &format!("http://{addr}/-/ready")) == Some(200)
        });
        prometheus
    }

    /// Prometheus's own log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// GET of an API path; the `data` of a successful answer, or the error.
    pub fn api(&self, path: &str, query: Option<&str>) -> Result<Value, String> {
        let agent = agent();
        let mut request = agent.get(format!("http://{}{path}", self.addr));
        if let Some(query) = query {
            request = request.query("query", query);
        }
        let response = request.call().map_err(|e| e.to_string())?;
        let text = response
            .into_body()
            .read_to_string()
            .map_err(|e| e.to_string())?;
        let body: Value = serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))?;
        if body["status"] != "success" {
            return Err(format!("{}: {}", body["errorType"], body["error"]));
        }
        Ok(body["data"].clone())
    }

    /// An instant query's result vector (a scalar as one element), or the error.
    pub fn query(&self, promql: &str) -> Result<Vec<Value>, String> {
        let data = self.api("/api/v1/query", Some(promql))?;
        Ok(match &data["result"] {
            Value::Array(samples) => samples.clone(),
            other => vec![other.clone()],
        })
    }

    /// Waits up to a minute for `done`, or panics with Prometheus's log.
    pub fn wait(&self, what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !done() {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for Prometheus: {what}\nprometheus log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Polls `promql` until `done` accepts the result, then returns it.
    pub fn wait_for(&self, promql: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let mut last = Vec::new();
        self.wait(promql, || {
            last = self
                .query(promql)
                .unwrap_or_else(|e| panic!("{promql}: {e}"));
            done(&last)
        });
        last
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn send_quietly(agent: &ureq::Agent, url: &str) -> Option<u16> {
    agent.get(url).call().ok().map(|r| r.status().as_u16())
}

/// The value of an instant-vector sample.
pub fn sample_value(sample: &Value) -> f64 {
    sample["value"][1]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

/// A real `redis-server` on a free port, with an append-only file fsynced on
/// every write, so a restart keeps its data.
pub struct Redis {
    child: Option<Child>,
    /// Its port.
    pub port: u16,
    dir: tempfile::TempDir,
}

impl Redis {
    /// Starts a fresh server.
    pub fn start() -> Self {
        let mut redis = Redis {
            child: None,
            port: free_port(),
            dir: tempfile::tempdir().unwrap(),
        };
        redis.launch();
        redis
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn launch(&mut self) {
        let child = Command::new(tool("redis-server", "redis-server"))
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes",
            ])
            .args([
                "--appendfsync",
                "always",
                "--daemonize",
                "no",
                "--protected-mode",
                "no",
            ])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
                let _ = stream.write_all(b"PING\r\n");
                let mut reply = [0u8; 7];
                if stream.read_exact(&mut reply).is_ok() && &reply == b"+PONG\r\n" {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "redis-server did not start on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the server (its data stays on disk).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port and data.
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Held by tests that load the machine heavily or measure time, so that no
/// two of them run at once on a small machine (light tests still run beside
/// them).
pub fn exclusive() -> std::sync::MutexGuard<'static, ()> {
    static HEAVY: Mutex<()> = Mutex::new(());
    HEAVY
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
