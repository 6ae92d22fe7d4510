//! Gives memory back to the system after a crowd of connections has left.
//!
//! Each connection's buffers come from the allocator; when thousands close
//! at once, glibc keeps the freed pages in its arenas, and the host's RSS
//! stays at the crowd's peak for good (8,000 slow senders: 68 MiB before,
//! 330 MiB during and after). Every few seconds this looks at how many
//! connections were open at the peak since its last look; when many more
//! than now, it asks glibc to return free pages (`malloc_trim`), on a
//! blocking thread. Start-up calls it once too, after compiling components:
//! part of Cranelift's working memory, freed by then, would otherwise stay
//! in the host's RSS for good (hello-p3 compiled at start: about 4 MiB of
//! its 36 MiB). Elsewhere (no glibc) it does nothing.

use std::sync::Arc;
use std::time::Duration;

use super::connection::registry::Connections;
use crate::shutdown::{Phase, Shutdown};

/// How often the peak is looked at.
const LOOK_EVERY: Duration = Duration::from_secs(5);

/// How many fewer connections than the peak make a trim worth it: below
/// this, what a trim gives back is small against its cost (it walks every
/// arena).
const CLOSED_SINCE_PEAK: usize = 256;

/// Trims after crowds leave, until the host starts draining.
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

/// Returns the allocator's free pages to the system. The host's one use of
/// `unsafe`: glibc has this only as a C function (the `libc` crate binds it
/// the same way), and swapping the allocator for one that returns memory by
/// itself would change every allocation the request path makes.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn return_free_memory() {
    unsafe extern "C" {
        /// glibc: releases free memory at the top of the heap and, in every
        /// arena, whole free pages (`madvise`); returns whether any was.
        fn malloc_trim(pad: usize) -> std::ffi::c_int;
    }
    // SAFETY: `malloc_trim` only gives back memory no allocation holds; it
    // takes each arena's lock like any `malloc` call.
    unsafe {
        malloc_trim(0);
    }
}

/// Returns the allocator's free pages to the system (nothing to do here).
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn return_free_memory() {}
