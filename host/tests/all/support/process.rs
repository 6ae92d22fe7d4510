//! The real `hero-host` binary on port 0, its stdout captured line by line,
//! killed when the test ends.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::apps::AppDir;
use super::http::get;

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
        let name_text = name.to_string_lossy();
        // The test's own configuration never reaches the host, nor does an
        // OpenTelemetry set-up of the machine running the tests.
        if name_text.starts_with("HERO_HOST_") || name_text.starts_with("OTEL_") {
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

/// CPU time a process has used, from /proc (user and system, 100 Hz ticks
/// as Linux reports them to user space).
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name, which is in parentheses.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    ticks as f64 / 100.0
}
