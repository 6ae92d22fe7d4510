//! Test support, by job: the applications tests run (`apps`), the host
//! process under test (`process`), HTTP from the client's side (`http`, and
//! `raw` for what a well-behaved client never does), the real servers tests
//! talk to (`prometheus`, `redis`), an OTLP receiver (`otlp`), and the
//! log-line schema (`log_schema`).

mod apps;
mod http;
mod log_schema;
mod otlp;
mod process;
mod prometheus;
mod raw;
mod redis;

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub use self::apps::*;
pub use self::http::*;
pub use self::log_schema::*;
pub use self::otlp::*;
pub use self::process::*;
pub use self::prometheus::*;
pub use self::raw::*;
pub use self::redis::*;

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

/// Held by tests that load the machine heavily or measure time, so that no
/// two of them run at once on a small machine (light tests still run beside
/// them).
pub fn exclusive() -> std::sync::MutexGuard<'static, ()> {
    static HEAVY: Mutex<()> = Mutex::new(());
    HEAVY
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
