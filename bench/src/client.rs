//! The client side of a run: `hero-bench seed`, `hero-bench load` and `wrk`
//! as child processes pinned to the load generator's core, while this process
//! watches the server's memory.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::load::{LoadReport, SeedReport};
use crate::results::CrossCheck;
use crate::server::Server;

/// Longest one load may run before it is killed.
const LOAD_LIMIT: Duration = Duration::from_secs(600);
/// How often the server's memory is sampled during a load.
const RSS_SAMPLE: Duration = Duration::from_millis(100);

/// Runs the load generator and wrk on the client core.
#[derive(Clone)]
pub struct Client {
    /// This binary: `hero-bench`.
    pub exe: PathBuf,
    /// The load generator's core (a `taskset` list).
    pub cpu: String,
    /// Connections.
    pub concurrency: usize,
    /// Warm-up per load.
    pub warmup: Duration,
    /// Measured time per load.
    pub duration: Duration,
}

/// A load and the server's memory during it.
pub struct Measured {
    /// What the load generator measured.
    pub report: LoadReport,
    /// Peak resident memory, KiB.
    pub peak_kib: u64,
    /// Resident memory at the end, KiB.
    pub end_kib: u64,
}

impl Client {
    /// Creates heroes on `addr` until `count` more are stored; their ids go
    /// to `ids`.
    pub fn seed(&self, addr: SocketAddr, count: usize, ids: &Path) -> anyhow::Result<SeedReport> {
        let args = [
            "seed",
            "--addr",
            &addr.to_string(),
            "--count",
            &count.to_string(),
            "--concurrency",
            &self.concurrency.to_string(),
            "--out",
            &ids.display().to_string(),
        ]
        .map(String::from);
        let output = self.command(&args).stderr(Stdio::inherit()).output()?;
        if !output.status.success() {
            bail!("seeding failed ({})", output.status);
        }
        Ok(serde_json::from_slice(&output.stdout)?)
    }

    /// Runs `hero-bench load` with `args` against `server`, watching its
    /// memory.
    pub fn load(&self, server: &mut Server, args: &[String]) -> anyhow::Result<Measured> {
        let mut all = vec!["load".to_owned()];
        all.extend(self.load_flags(server));
        all.extend_from_slice(args);
        let reset = server.reset_peak();
        let mut child = self
            .command(&all)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let mut sampled = 0;
        let began = Instant::now();
        while child.try_wait()?.is_none() {
            sampled = sampled.max(server.rss_kib().0);
            std::thread::sleep(RSS_SAMPLE);
            if began.elapsed() > LOAD_LIMIT {
                let _ = child.kill();
            }
        }
        let output = child.wait_with_output()?;
        if !output.status.success() {
            bail!("the load generator failed ({})", output.status);
        }
        let (end_kib, hwm) = server.rss_kib();
        if !server.running() {
            bail!("the server died under load");
        }
        // Without a reset, VmHWM is the peak since start; sampling is then the
        // better figure.
        let peak_kib = if reset {
            hwm.max(sampled)
        } else {
            sampled.max(end_kib)
        };
        Ok(Measured {
            report: serde_json::from_slice(&output.stdout)?,
            peak_kib,
            end_kib,
        })
    }

    /// Runs `hero-bench alternate`: the two `(server, load args)` sides of
    /// `sides` loaded in turns of `turn` (the second side's first when
    /// `second_first`), each measured for this client's duration; reports
    /// each side, in the order given.
    pub fn alternate(
        &self,
        sides: [(&mut Server, &[String]); 2],
        turn: Duration,
        second_first: bool,
    ) -> anyhow::Result<[LoadReport; 2]> {
        let flags: Vec<Vec<String>> = sides
            .iter()
            .map(|(server, args)| {
                let mut flags = self.load_flags(server);
                flags.extend_from_slice(args);
                flags
            })
            .collect();
        let mut all = vec![
            "alternate".to_owned(),
            "--turn".to_owned(),
            format!("{}ms", turn.as_millis()),
        ];
        if second_first {
            all.push("--second-goes-first".to_owned());
        }
        for (which, flags) in ["--first", "--second"].into_iter().zip(&flags) {
            all.push(which.to_owned());
            all.push(serde_json::to_string(flags)?);
        }
        let output = self
            .command(&all)
            .stderr(Stdio::inherit())
            .output()
            .context("running hero-bench alternate")?;
        if !output.status.success() {
            bail!("the load generator failed ({})", output.status);
        }
        for (server, _) in sides {
            if !server.running() {
                bail!("the server on {} died under load", server.listen);
            }
        }
        Ok(serde_json::from_slice(&output.stdout)?)
    }

    /// The flags of a load on `server` with this client's settings.
    fn load_flags(&self, server: &Server) -> Vec<String> {
        [
            "--addr",
            &server.listen.to_string(),
            "--concurrency",
            &self.concurrency.to_string(),
            "--warmup",
            &format!("{}ms", self.warmup.as_millis()),
            "--duration",
            &format!("{}ms", self.duration.as_millis()),
        ]
        .map(String::from)
        .to_vec()
    }

    /// `wrk -t1` on the load generator's core, same connections and duration
    /// (the server is already warm).
    pub fn wrk(&self, addr: SocketAddr) -> anyhow::Result<CrossCheck> {
        let tool = format!("wrk -t1 -c{}", self.concurrency);
        let output = Command::new("taskset")
            .args(["-c", &self.cpu, "wrk", "-t1", "--latency"])
            .arg(format!("-c{}", self.concurrency))
            .arg(format!("-d{}s", self.duration.as_secs().max(1)))
            .arg(format!("http://{addr}/"))
            .output()
            .context("running wrk")?;
        if !output.status.success() {
            bail!("wrk failed ({})", output.status);
        }
        let text = String::from_utf8_lossy(&output.stdout);
        let field = |prefix: &str| {
            text.lines()
                .find_map(|l| l.trim().strip_prefix(prefix))
                .map(str::trim)
                .with_context(|| format!("no {prefix:?} in wrk's output"))
        };
        Ok(CrossCheck {
            tool,
            rps: field("Requests/sec:")?.parse()?,
            p50_ms: wrk_ms(field("50%")?)?,
            p99_ms: wrk_ms(field("99%")?)?,
            ..CrossCheck::default()
        })
    }

    /// A command running this binary on the load generator's core.
    fn command(&self, args: &[String]) -> Command {
        let mut command = Command::new("taskset");
        command.arg("-c").arg(&self.cpu).arg(&self.exe).args(args);
        command
    }
}

/// A wrk latency (`126.00us`, `2.35ms`, `1.02s`) in milliseconds.
fn wrk_ms(text: &str) -> anyhow::Result<f64> {
    let split = text
        .find(|c: char| c.is_ascii_alphabetic())
        .with_context(|| format!("no unit in {text:?}"))?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse()?;
    Ok(match unit {
        "us" => number / 1e3,
        "ms" => number,
        "s" => number * 1e3,
        "m" => number * 60e3,
        _ => bail!("unknown unit in {text:?}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrk_latencies_become_milliseconds() {
        assert_eq!(wrk_ms("126.00us").unwrap(), 0.126);
        assert_eq!(wrk_ms("2.35ms").unwrap(), 2.35);
        assert_eq!(wrk_ms("1.50s").unwrap(), 1500.0);
        assert!(wrk_ms("12").is_err());
    }
}
