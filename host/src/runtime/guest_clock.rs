//! The clock behind `wasm_guest_cpu_time_seconds_total`.
//!
//! The host enters wasm very often: besides each guest call, once per string
//! or list it hands the guest (`cabi_realloc`), ten thousand times for a
//! `get-keys` of ten thousand keys. Reading the precise monotonic clock at
//! each entry and exit cost a tenth of such a request. The coarse monotonic
//! clock reads in a few nanoseconds; it advances in ticks of a few
//! milliseconds, so one short interval often reads as zero, but intervals
//! start at random phases of the tick, so each difference is an unbiased
//! estimate and their sum converges on the true total, which is what a
//! counter read as a rate needs.

/// Nanoseconds since an arbitrary start, on a cheap clock.
#[cfg(target_os = "linux")]
pub fn now_nanos() -> u64 {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::MonotonicCoarse);
    u64::try_from(now.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(now.tv_nsec).unwrap_or(0)
}

/// Nanoseconds since an arbitrary start, on a cheap clock.
#[cfg(not(target_os = "linux"))]
pub fn now_nanos() -> u64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let start = START.get_or_init(std::time::Instant::now);
    u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_of_short_intervals_estimate_the_total() {
        // 5,000 busy intervals of 100 µs, separated by uncounted gaps of
        // varying length: on a 4 ms tick most intervals read as zero and a
        // few as a whole tick, yet the sum lands near the precise total
        // (about 125 ticks are crossed: ±9% at one standard deviation).
        let busy = |micros: u64| {
            let spin = std::time::Instant::now();
            while spin.elapsed() < std::time::Duration::from_micros(micros) {}
        };
        let (mut coarse, mut precise) = (0u64, 0u128);
        for i in 0..5000u64 {
            busy(i * 7919 % 100);
            let start = now_nanos();
            let interval = std::time::Instant::now();
            busy(100);
            coarse += now_nanos() - start;
            precise += interval.elapsed().as_nanos();
        }
        let ratio = coarse as f64 / precise as f64;
        assert!(
            (0.6..=1.4).contains(&ratio),
            "coarse {coarse} ns vs precise {precise} ns"
        );
    }
}
