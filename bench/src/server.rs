//! A server under test: started pinned to one core, polled until it answers
//! 200, watched through `/proc` for its resident memory, stopped with SIGTERM.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// How to start one contender.
#[derive(Debug, Clone)]
pub struct Launch {
    /// The program.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// Where its stdout goes; `None` for /dev/null.
    pub stdout: Option<PathBuf>,
    /// Where its stderr goes.
    pub stderr: PathBuf,
    /// The public address it listens on.
    pub listen: SocketAddr,
}

/// A running server; killed when dropped, if still running.
pub struct Server {
    child: Child,
    /// Its process id (the program's own: `taskset` execs it).
    pub pid: u32,
    /// Its public address.
    pub listen: SocketAddr,
    stderr: PathBuf,
}

/// Starts `launch` pinned to the cores `cpu` (a `taskset` list); returns the
/// server and the instant just before it was spawned.
pub fn start(launch: &Launch, cpu: &str) -> anyhow::Result<(Server, Instant)> {
    let stdout = match &launch.stdout {
        Some(path) => Stdio::from(
            File::options()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("opening {}", path.display()))?,
        ),
        None => Stdio::null(),
    };
    let stderr = File::options()
        .create(true)
        .append(true)
        .open(&launch.stderr)
        .with_context(|| format!("opening {}", launch.stderr.display()))?;
    let started = Instant::now();
    let child = Command::new("taskset")
        .arg("-c")
        .arg(cpu)
        .arg(&launch.program)
        .args(&launch.args)
        .envs(launch.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .with_context(|| format!("starting {}", launch.program.display()))?;
    let pid = child.id();
    Ok((
        Server {
            child,
            pid,
            listen: launch.listen,
            stderr: launch.stderr.clone(),
        },
        started,
    ))
}

impl Server {
    /// Polls `GET path` every millisecond until it answers 200; returns the
    /// time from `started` to that answer.
    pub fn wait_ready(
        &mut self,
        addr: SocketAddr,
        path: &str,
        started: Instant,
        timeout: Duration,
    ) -> anyhow::Result<Duration> {
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "the server exited with {status} before answering; its stderr:\n{}",
                    tail(&self.stderr, 2000)
                );
            }
            if get(addr, path).is_ok_and(|(status, _)| status == 200) {
                return Ok(started.elapsed());
            }
            if started.elapsed() > timeout {
                bail!(
                    "no 200 from GET {path} on {addr} within {timeout:?}; stderr:\n{}",
                    tail(&self.stderr, 2000)
                );
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Resident memory now and its peak since the last [`Server::reset_peak`],
    /// in KiB (`VmRSS`, `VmHWM`).
    pub fn rss_kib(&self) -> (u64, u64) {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid)).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap_or(0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    /// Resets the peak resident memory (`VmHWM`) to the current one. Returns
    /// false when the kernel refuses; callers then rely on sampling.
    pub fn reset_peak(&self) -> bool {
        std::fs::write(format!("/proc/{}/clear_refs", self.pid), "5").is_ok()
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGTERM, then SIGKILL after `grace`. Returns how long it took to exit.
    pub fn stop(mut self, grace: Duration) -> anyhow::Result<Duration> {
        let asked = Instant::now();
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid.to_string())
            .status();
        while asked.elapsed() < grace {
            if self.child.try_wait()?.is_some() {
                return Ok(asked.elapsed());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        self.child.kill()?;
        self.child.wait()?;
        bail!("did not exit within {grace:?} of SIGTERM; killed")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// One `GET` over a fresh connection: the status code and the body.
pub fn get(addr: SocketAddr, path: &str) -> anyhow::Result<(u16, Vec<u8>)> {
    exchange(addr, "GET", path, &[])
}

/// One `POST` of `body` over a fresh connection: the status code and the
/// answer's body.
#[cfg(test)]
pub fn post(addr: SocketAddr, path: &str, body: &[u8]) -> anyhow::Result<(u16, Vec<u8>)> {
    exchange(addr, "POST", path, body)
}

/// One HTTP/1.1 request with `Connection: close`, read to its end (so the
/// server never sees a reset while still writing).
fn exchange(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &[u8],
) -> anyhow::Result<(u16, Vec<u8>)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(200))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    )?;
    stream.write_all(body)?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer)?;
    parse_answer(&answer)
}

/// The status and body of a whole HTTP/1.1 answer with a `Content-Length`
/// (or none: the body runs to the end).
fn parse_answer(answer: &[u8]) -> anyhow::Result<(u16, Vec<u8>)> {
    // "HTTP/1.1 200 OK"
    let status = answer
        .get(9..12)
        .and_then(|code| std::str::from_utf8(code).ok())
        .and_then(|code| code.parse().ok())
        .with_context(|| format!("no status line in {:?}", String::from_utf8_lossy(answer)))?;
    let body = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(&[][..], |end| &answer[end + 4..]);
    Ok((status, body.to_vec()))
}

/// The last `max` bytes of a file, for error messages.
pub fn tail(path: &Path, max: usize) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    String::from_utf8_lossy(&text[text.len().saturating_sub(max)..]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_splits_into_status_and_body() {
        let answer = b"HTTP/1.1 404 Not Found\r\ncontent-length: 2\r\n\r\n{}";
        assert_eq!(parse_answer(answer).unwrap(), (404, b"{}".to_vec()));
        let empty = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(parse_answer(empty).unwrap(), (200, Vec::new()));
        assert!(parse_answer(b"garbage").is_err());
    }
}
