//! Gives memory back to the system after a crowd of connections has left.
//!
//! Each connection's buffers come from the allocator (jemalloc, see
//! `main.rs`); when thousands close at once, their pages are free but stay
//! the host's until jemalloc's decay purges them, which it does only as
//! later allocations come. Every few seconds this looks at how many
//! connections were open at the peak since its last look; when many more
//! than now, it has jemalloc purge every arena at once, on a blocking
//! thread (6,000 slow senders: 61 MiB before, 196 MiB during, 70 MiB 5.5 s
//! after they left). Start-up calls it once too, after compiling components,
//! for the part of Cranelift's working memory freed by then. Where jemalloc
//! is not the allocator (MSVC) it does nothing.

use std::sync::Arc;
use std::time::Duration;

use super::connection::registry::Connections;
use crate::shutdown::{Phase, Shutdown};

/// How often the peak is looked at.
const LOOK_EVERY: Duration = Duration::from_secs(5);

/// How many fewer connections than the peak make a purge worth it: below
/// this, what a purge gives back is small against its cost (it walks every
/// arena).
const CLOSED_SINCE_PEAK: usize = 256;

/// Purges after crowds leave, until the host starts draining.
pub async fn give_back_after_crowds(connections: Arc<Connections>, shutdown: Shutdown) {
    let draining = shutdown.wait_for(Phase::Draining);
    tokio::pin!(draining);
    let mut ticks = tokio::time::interval(LOOK_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = &mut draining => return,
            _ = ticks.tick() => {}
        }
        let (peak, open) = connections.take_peak();
        if peak >= open + CLOSED_SINCE_PEAK {
            tracing::debug!(
                peak_connections = peak,
                open_connections = open,
                "returning free memory to the system"
            );
            let _ = tokio::task::spawn_blocking(return_free_memory).await;
        }
    }
}

/// Returns the allocator's free pages to the system now, rather than as
/// jemalloc's decay would. A purge jemalloc refuses is logged; nothing else
/// depends on it.
#[cfg(not(target_env = "msvc"))]
pub fn return_free_memory() {
    let status = purge_every_arena();
    if status != 0 {
        tracing::warn!(
            mallctl_status = status,
            "jemalloc refused to purge its arenas: freed memory stays until its decay"
        );
    }
}

/// `arena.<MALLCTL_ARENAS_ALL>.purge`: every arena, whichever thread freed
/// into it; `mallctl`'s status (0 when done). The host's one use of
/// `unsafe`: jemalloc has this only as a C function.
#[cfg(not(target_env = "msvc"))]
#[allow(unsafe_code)]
fn purge_every_arena() -> std::ffi::c_int {
    const PURGE_EVERY_ARENA: &[u8] = b"arena.4096.purge\0";
    // SAFETY: a NUL-terminated name, and no value read or written, as the
    // purge control takes; purging only gives back pages no allocation holds.
    unsafe {
        tikv_jemalloc_sys::mallctl(
            PURGE_EVERY_ARENA.as_ptr().cast(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            0,
        )
    }
}

/// Returns the allocator's free pages to the system (nothing to do here).
#[cfg(target_env = "msvc")]
pub fn return_free_memory() {}

#[cfg(all(test, not(target_env = "msvc")))]
mod tests {
    use super::*;

    /// The control's name is jemalloc's (4096 is `MALLCTL_ARENAS_ALL`): a
    /// misspelt one would make every purge a silent no-op.
    #[test]
    fn jemalloc_accepts_the_purge_of_every_arena() {
        let freed: Vec<Vec<u8>> = (0..1000).map(|_| vec![1u8; 64 * 1024]).collect();
        drop(freed);
        assert_eq!(purge_every_arena(), 0);
    }
}
