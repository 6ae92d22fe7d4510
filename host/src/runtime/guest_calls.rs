//! Where the store is in its guest calls, as the call hook sees them: how
//! deep the host has entered wasm, and how many outermost guest calls have
//! returned.
//!
//! Guest CPU time is measured per outermost call, on the cheap clock of
//! [`super::guest_clock`]: host calls the guest makes count as its time, and
//! the host calling back into the guest during a guest call (as
//! `cabi_realloc` when lowering) does not restart the measurement. The epoch callback uses the count of returns to tell a
//! guest that has run without returning since the previous tick (a spinning
//! guest: it must yield, or the thread's other tasks starve) from a guest
//! that merely happened to run when the tick came (a short call: yielding it
//! would only send the instance, and every request it serves, to the back of
//! the thread's queue; on one core that yield at every tick cost hello a
//! third of its p99).

use super::guest_clock;

/// The store's guest calls; kept in the store's data, touched only by the
/// call hook, the epoch callback and the worker reporting guest time.
#[derive(Debug, Default)]
pub struct GuestCalls {
    /// Entries into wasm not yet returned from: above 1 while the host calls
    /// back into the guest during a guest call.
    depth: u32,
    /// Outermost guest calls that have returned.
    returned: u64,
    /// `returned` at the previous epoch tick, if there was one.
    returned_at_tick: Option<u64>,
    /// Whether guest CPU time is measured (with metrics on).
    timed: bool,
    /// When the outermost call running now began, on [`super::guest_clock`]
    /// (timed only).
    entered_at: Option<u64>,
    /// Nanoseconds spent in guest calls not yet taken by [`Self::take_time`].
    time: u64,
}

impl GuestCalls {
    /// The calls of a new store; `timed` measures their CPU time.
    pub fn new(timed: bool) -> Self {
        GuestCalls {
            timed,
            ..GuestCalls::default()
        }
    }

    /// The host enters wasm; whether this starts an outermost guest call.
    pub fn enter(&mut self) -> bool {
        self.depth += 1;
        let outermost = self.depth == 1;
        if outermost && self.timed {
            self.entered_at = Some(guest_clock::now_nanos());
        }
        outermost
    }

    /// Wasm returns to the host; whether an outermost guest call ended.
    pub fn leave(&mut self) -> bool {
        self.depth = self.depth.saturating_sub(1);
        let outermost = self.depth == 0;
        if outermost {
            self.returned = self.returned.wrapping_add(1);
            if let Some(entered) = self.entered_at.take() {
                self.time += guest_clock::now_nanos().saturating_sub(entered);
            }
        }
        outermost
    }

    /// Guest CPU time (nanoseconds) since the last call, for the
    /// component's counter.
    pub fn take_time(&mut self) -> u64 {
        std::mem::take(&mut self.time)
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

    #[test]
    fn only_outermost_calls_of_a_timed_store_count_as_guest_time() {
        let spin = |millis| std::thread::sleep(std::time::Duration::from_millis(millis));
        let mut timed = GuestCalls::new(true);
        timed.enter();
        spin(30);
        // A call back in: it must not restart the outer measurement.
        timed.enter();
        timed.leave();
        spin(30);
        timed.leave();
        spin(30); // outside any guest call
        let nanos = timed.take_time();
        // The coarse clock reads in ticks of a few milliseconds; a busy
        // machine may oversleep, never undersleep.
        assert!(
            (40_000_000..=1_000_000_000).contains(&nanos),
            "{nanos} ns for 60 ms inside a call"
        );
        assert_eq!(timed.take_time(), 0, "taken once");

        let mut untimed = GuestCalls::default();
        untimed.enter();
        spin(10);
        untimed.leave();
        assert_eq!(untimed.take_time(), 0);
    }
}
