//! Where the store is in its guest calls, as the call hook sees them: how
//! deep the host has entered wasm, and how many outermost guest calls have
//! returned.
//!
//! Guest CPU time is measured per outermost call (the host calling back
//! into the guest during a guest call, as `cabi_realloc` when lowering, does
//! not restart it). The epoch callback uses the count of returns to tell a
//! guest that has run without returning since the previous tick (a spinning
//! guest: it must yield, or the thread's other tasks starve) from a guest
//! that merely happened to run when the tick came (a short call: yielding it
//! would only send the instance, and every request it serves, to the back of
//! the thread's queue; on one core that yield at every tick cost hello a
//! third of its p99).

/// The store's guest calls; kept in the store's data, touched only by the
/// call hook and the epoch callback.
#[derive(Debug, Default)]
pub struct GuestCalls {
    /// Entries into wasm not yet returned from: above 1 while the host calls
    /// back into the guest during a guest call.
    depth: u32,
    /// Outermost guest calls that have returned.
    returned: u64,
    /// `returned` at the previous epoch tick, if there was one.
    returned_at_tick: Option<u64>,
}

impl GuestCalls {
    /// The host enters wasm; whether this starts an outermost guest call.
    pub fn enter(&mut self) -> bool {
        self.depth += 1;
        self.depth == 1
    }

    /// Wasm returns to the host; whether an outermost guest call ended.
    pub fn leave(&mut self) -> bool {
        self.depth = self.depth.saturating_sub(1);
        if self.depth == 0 {
            self.returned = self.returned.wrapping_add(1);
        }
        self.depth == 0
    }

    /// At an epoch tick, which the guest sees while it runs: whether the
    /// guest call running now was already running at the previous tick, so
    /// that it has run for at least the time between them.
    pub fn ran_through_a_tick(&mut self) -> bool {
        let since_previous = self.returned_at_tick == Some(self.returned);
        self.returned_at_tick = Some(self.returned);
        since_previous
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_guest_that_returns_between_ticks_never_ran_through_one() {
        let mut calls = GuestCalls::default();
        for _ in 0..5 {
            assert!(calls.enter());
            assert!(!calls.ran_through_a_tick());
            assert!(calls.leave());
        }
    }

    #[test]
    fn a_guest_that_keeps_running_has_from_the_second_tick_on() {
        let mut calls = GuestCalls::default();
        calls.enter();
        assert!(!calls.ran_through_a_tick(), "the first tick it meets");
        assert!(calls.ran_through_a_tick());
        assert!(calls.ran_through_a_tick());
        calls.leave();
        calls.enter();
        assert!(!calls.ran_through_a_tick(), "a new call");
    }

    #[test]
    fn calls_back_into_the_guest_are_part_of_the_outer_call() {
        let mut calls = GuestCalls::default();
        assert!(calls.enter());
        assert!(!calls.ran_through_a_tick());
        // The guest calls the host, which calls back in (cabi_realloc).
        assert!(!calls.enter());
        assert!(!calls.leave());
        assert!(
            calls.ran_through_a_tick(),
            "a guest spinning on host calls still spins"
        );
        assert!(calls.leave());
    }
}
