//! Helpers shared by the unit tests of several modules.

use std::time::{Duration, Instant};

/// Waits (at most 10 s, looking every millisecond) until `done`, else fails
/// naming `what`.
pub fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}
