//! Real backends for unit tests: a SQLite file in a temporary directory, and
//! a real `redis-server` on a free port (a missing `redis-server` fails the
//! test, saying how to install it).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Backend;
use super::redis::{RedisDb, RedisStore};
use super::sqlite::{SqliteDb, SqliteStore};

/// A SQLite file store labelled `label`, and the directory holding the file.
pub fn sqlite(label: &str) -> (tempfile::TempDir, Backend) {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(SqliteDb::open(Some(&dir.path().join("kv.db"))).unwrap());
    (dir, Backend::Sqlite(SqliteStore::new(db, label)))
}

/// A `redis-server` with no persistence, killed on drop.
pub struct RedisServer {
    child: Child,
    port: u16,
}

impl RedisServer {
    /// Starts one on a free port and waits until it answers PING.
    pub fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| {
                panic!(
                    "cannot start `redis-server` ({error}): `apt-get install redis-server` \
                     (CI installs it in .ci/run)"
                )
            });
        let server = RedisServer { child, port };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !server.answers() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    fn answers(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
        let mut reply = [0u8; 7];
        stream.write_all(b"PING\r\n").is_ok()
            && stream.read_exact(&mut reply).is_ok()
            && &reply == b"+PONG\r\n"
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A new connection (as another replica would have) serving `label`.
    pub fn store(&self, label: &str) -> Backend {
        let db = RedisDb::connect_lazily(&format!("redis://127.0.0.1:{}", self.port)).unwrap();
        Backend::Redis(RedisStore::new(db, label))
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
