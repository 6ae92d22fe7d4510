//! Histograms bound per series: a route's request histograms, a store's
//! key-value operation histogram.
//!
//! Recording into an OpenTelemetry histogram with attributes hashes every
//! attribute (SipHash over four to six `KeyValue`s) under the instrument's
//! lock, three times a request and once a key-value operation. A route
//! knows its `http.route` and `spin.component` for good, a store its label
//! and backend; what varies is the method, the status and the error type of
//! a request, the operation and its outcome: a handful of combinations each.
//! [`BoundSeries`] keeps, for each combination seen, what is bound to its
//! attributes (the SDK's bound instruments), found by comparing small
//! values without a lock: slots are filled once, in order, under a mutex
//! only the binding takes. Past [`MAX_BOUND`] combinations the caller
//! records unbound.

use std::sync::{Mutex, OnceLock, PoisonError};

use opentelemetry::metrics::BoundHistogram;

/// Series one [`BoundSeries`] binds at most; a route with more (a guest
/// answering with many statuses) records its rarer ones through the SDK's
/// lookup.
pub const MAX_BOUND: usize = 32;

/// What tells a route's series apart.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct SeriesKey {
    /// Normalized method.
    pub method: &'static str,
    /// Response status.
    pub status: u16,
    /// `error.type`, when the request failed.
    pub error_type: Option<&'static str>,
}

/// The three request histograms bound to one series' attributes.
pub struct BoundRequest {
    /// `http.server.request.duration`, seconds.
    pub duration: BoundHistogram<f64>,
    /// `http.server.request.body.size`, bytes.
    pub request_body: BoundHistogram<u64>,
    /// `http.server.response.body.size`, bytes.
    pub response_body: BoundHistogram<u64>,
}

/// One route's bound series: the three request histograms per
/// [`SeriesKey`].
pub type RouteSeries = BoundSeries<SeriesKey, BoundRequest>;

/// One store's bound series: the operation histogram per operation and
/// whether it succeeded.
pub type OperationSeries = BoundSeries<(&'static str, bool), BoundHistogram<f64>>;

/// Bound series, `V` per key `K`; made once with what it serves (a route, a
/// store), empty. The handles it keeps belong to the [`super::Metrics`]
/// that first recorded through it: one host has one.
pub struct BoundSeries<K, V> {
    /// Filled front to back; a filled slot never changes.
    slots: [OnceLock<(K, V)>; MAX_BOUND],
    /// Held while a slot is filled, so that a key is bound once.
    binding: Mutex<()>,
}

/// What a lookup of a key among the slots found.
enum Lookup<'a, V> {
    /// What is bound for the key.
    Bound(&'a V),
    /// Not bound; this is the first empty slot.
    Free(usize),
    /// Not bound, and every slot holds another key.
    Full,
}

impl<K, V> Default for BoundSeries<K, V> {
    fn default() -> Self {
        BoundSeries {
            slots: std::array::from_fn(|_| OnceLock::new()),
            binding: Mutex::new(()),
        }
    }
}

impl<K: Copy + Eq, V> BoundSeries<K, V> {
    /// Hands `record` what is bound for `key`, binding it with `bind` the
    /// first time. Returns false, recording nothing, when [`MAX_BOUND`]
    /// other series are kept already.
    pub fn record(&self, key: K, bind: impl FnOnce() -> V, record: impl FnOnce(&V)) -> bool {
        let found = match self.find(key) {
            Lookup::Free(_) => {
                let _binding = self.binding.lock().unwrap_or_else(PoisonError::into_inner);
                // Looked up again: another request may have bound it meanwhile;
                // no one else fills slots while the lock is held.
                match self.find(key) {
                    Lookup::Free(at) => Some(&self.slots[at].get_or_init(|| (key, bind())).1),
                    Lookup::Bound(found) => Some(found),
                    Lookup::Full => None,
                }
            }
            Lookup::Bound(found) => Some(found),
            Lookup::Full => None,
        };
        found.map(record).is_some()
    }

    /// Where `key` stands among the slots.
    fn find(&self, key: K) -> Lookup<'_, V> {
        for (at, slot) in self.slots.iter().enumerate() {
            match slot.get() {
                Some((bound_key, bound)) if *bound_key == key => return Lookup::Bound(bound),
                Some(_) => {}
                None => return Lookup::Free(at),
            }
        }
        Lookup::Full
    }

    /// How many series are bound.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.slots
            .iter()
            .filter(|slot| slot.get().is_some())
            .count()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn bound() -> BoundRequest {
        let meter = opentelemetry::global::meter("series-test");
        BoundRequest {
            duration: meter.f64_histogram("d").build().bind(&[]),
            request_body: meter.u64_histogram("q").build().bind(&[]),
            response_body: meter.u64_histogram("r").build().bind(&[]),
        }
    }

    #[test]
    fn racing_requests_bind_each_series_once_and_past_the_bound_record_nothing() {
        let series = RouteSeries::default();
        let (binds, records, refused) = (
            AtomicUsize::new(0),
            AtomicUsize::new(0),
            AtomicUsize::new(0),
        );
        let keys = MAX_BOUND as u16 + 8;
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    for status in 0..keys {
                        let key = SeriesKey {
                            method: "GET",
                            status,
                            error_type: None,
                        };
                        let bind = || {
                            binds.fetch_add(1, Ordering::Relaxed);
                            bound()
                        };
                        let record = |_: &BoundRequest| {
                            records.fetch_add(1, Ordering::Relaxed);
                        };
                        if !series.record(key, bind, record) {
                            refused.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        assert_eq!(binds.into_inner(), MAX_BOUND, "each key bound once");
        assert_eq!(series.len(), MAX_BOUND);
        assert_eq!(records.into_inner(), 4 * MAX_BOUND);
        assert_eq!(refused.into_inner(), 4 * 8);
    }
}
