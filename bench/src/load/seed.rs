//! Seeding: heroes created with `POST /heroes` over several connections, their
//! ids written one a line for the load to read back.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::{Context, bail};
use hyper::{Method, StatusCode};
use serde::{Deserialize, Serialize};

use super::connection::Connection;
use super::template::Template;

/// Failed creations after which seeding gives up.
const MAX_ERRORS: u64 = 100;

/// What seeding did.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SeedReport {
    /// Heroes created.
    pub created: usize,
    /// Requests that failed or did not answer 201.
    pub errors: u64,
    /// Wall-clock seconds.
    pub seconds: f64,
}

/// Creates `count` heroes with `POST /heroes` over `concurrency` connections
/// and writes their ids, one a line, in creation order, to `out`.
pub async fn seed(
    addr: SocketAddr,
    body: &str,
    count: usize,
    concurrency: usize,
    out: &Path,
) -> anyhow::Result<SeedReport> {
    let started = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let template = Arc::new(Template::new(
        &Method::POST,
        addr,
        "/heroes",
        Some(body),
        Vec::new(),
    ));
    let workers: Vec<_> = (0..concurrency.max(1))
        .map(|_| {
            tokio::spawn(create(
                addr,
                Arc::clone(&template),
                Arc::clone(&next),
                count,
            ))
        })
        .collect();
    let mut ids = Vec::with_capacity(count);
    let mut errors = 0;
    for worker in workers {
        let (some, failed) = worker.await?;
        ids.extend(some);
        errors += failed;
    }
    if errors > MAX_ERRORS {
        bail!("seeding failed: more than {MAX_ERRORS} requests did not create a hero");
    }
    ids.sort_unstable();
    let text: String = ids.iter().map(|(_, id)| format!("{id}\n")).collect();
    std::fs::write(out, text).with_context(|| format!("writing {}", out.display()))?;
    Ok(SeedReport {
        created: ids.len(),
        errors,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// One connection's share: takes the next number until `count`; returns the
/// `(number, id)` of each hero it created and its failures.
async fn create(
    addr: SocketAddr,
    template: Arc<Template>,
    next: Arc<AtomicU64>,
    count: usize,
) -> (Vec<(u64, String)>, u64) {
    let mut connection = Connection::new(addr, None);
    let mut ids = Vec::new();
    let mut errors = 0u64;
    while errors <= MAX_ERRORS {
        let n = next.fetch_add(1, Ordering::Relaxed);
        if n >= count as u64 {
            break;
        }
        let created = match connection.exchange(template.build(None, n)).await {
            Ok((StatusCode::CREATED, body)) => serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|hero| hero["id"].as_str().map(|id| (n, id.to_owned()))),
            _ => None,
        };
        match created {
            Some(id) => ids.push(id),
            None => errors += 1,
        }
    }
    (ids, errors)
}

/// Reads ids written by [`seed`].
pub fn read_ids(path: &Path) -> anyhow::Result<Vec<String>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(text
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect())
}
