//! The request histograms of one route, bound per series.
//!
//! Recording into an OpenTelemetry histogram with attributes hashes every
//! attribute (SipHash over five or six `KeyValue`s) under the instrument's
//! lock, three times a request. A route knows its `http.route` and
//! `spin.component` for good; what varies is the method, the status and the
//! error type, a handful of combinations per route. [`RouteSeries`] keeps,
//! for each combination seen, the three histograms bound to its attributes
//! (the SDK's bound instruments), found by comparing three small values.
//! Past [`MAX_BOUND`] combinations a route records unbound, as before.

use std::sync::{PoisonError, RwLock};

use opentelemetry::metrics::BoundHistogram;

/// Series a route binds at most; a route with more (a guest answering with
/// many statuses) records its rarer ones through the SDK's lookup.
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

/// One route's bound series; made once with the route, empty. The handles
/// it keeps belong to the [`super::Metrics`] that first recorded through it:
/// one host has one.
#[derive(Default)]
pub struct RouteSeries {
    bound: RwLock<Vec<(SeriesKey, BoundRequest)>>,
}

impl RouteSeries {
    /// Hands `record` the bound histograms of `key`, binding them with `bind`
    /// the first time. Returns false, recording nothing, when the route
    /// already keeps [`MAX_BOUND`] other series.
    pub fn record(
        &self,
        key: SeriesKey,
        bind: impl FnOnce() -> BoundRequest,
        record: impl FnOnce(&BoundRequest),
    ) -> bool {
        {
            let bound = self.bound.read().unwrap_or_else(PoisonError::into_inner);
            if let Some((_, found)) = bound.iter().find(|(k, _)| *k == key) {
                record(found);
                return true;
            }
        }
        let mut bound = self.bound.write().unwrap_or_else(PoisonError::into_inner);
        let at = match bound.iter().position(|(k, _)| *k == key) {
            Some(at) => at,
            None if bound.len() >= MAX_BOUND => return false,
            None => {
                bound.push((key, bind()));
                bound.len() - 1
            }
        };
        record(&bound[at].1);
        true
    }

    /// How many series are bound.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.bound
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
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
