//! A real Prometheus server, scraping the host under test.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::http::agent;
use super::{free_port, tool};

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
        Self::with_config_and_flags(config, &[])
    }

    /// As [`Prometheus::with_config`], with command-line flags added (such as
    /// `--enable-feature=exemplar-storage`).
    pub fn with_config_and_flags(config: impl FnOnce(&Path) -> String, flags: &[&str]) -> Self {
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
            .args(flags)
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

/// Runs `promtool check metrics` on an exposition: whether it passed, and
/// what promtool said.
pub fn promtool_check(text: &str) -> (bool, String) {
    let mut child = Command::new(tool("promtool", "prometheus"))
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), text.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), said)
}
