//! Exemplars of the request-duration histogram: per series and bucket, the
//! trace of the latest sampled request that landed there, so that a latency
//! bucket links to a trace that shows why. The OpenTelemetry SDK records no
//! exemplars, so they are kept here, beside its histogram, with the same
//! series labels; the OpenMetrics exposition writes them on the bucket lines.
//!
//! Only sampled requests are recorded (their trace exists in the backend); a
//! request that records one takes one short lock.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use super::{RequestRecord, UNMATCHED_ROUTE};
use crate::telemetry::trace::{SpanId, TraceId};

/// The trace and span of a sampled request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExemplarIds {
    /// The trace.
    pub trace_id: TraceId,
    /// The request's server span.
    pub span_id: SpanId,
}

/// One exemplar: a request's ids, its duration, and when it ended.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Exemplar {
    /// The request's trace and span.
    pub ids: ExemplarIds,
    /// Its duration, seconds.
    pub value: f64,
    /// When it was recorded.
    pub at: SystemTime,
}

/// The labels of a request-duration series, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Series {
    method: &'static str,
    route: Option<Arc<str>>,
    status: u16,
    component: Option<Arc<str>>,
    error_type: Option<&'static str>,
}

/// The latest exemplar of each bucket of each series.
pub struct Exemplars {
    bounds: &'static [f64],
    series: Mutex<HashMap<Series, Vec<Option<Exemplar>>>>,
}

/// The labels of a series as the exposition writes them: method, route,
/// status, component, error type (empty when absent).
pub type SeriesLabels = [String; 5];

impl Exemplars {
    /// Exemplars of a histogram with these bucket bounds (the last bucket,
    /// `+Inf`, is implied).
    pub fn new(bounds: &'static [f64]) -> Self {
        Exemplars {
            bounds,
            series: Mutex::default(),
        }
    }

    /// Keeps `ids` as the exemplar of the bucket `record`'s duration falls in.
    pub fn record(&self, record: &RequestRecord<'_>, ids: ExemplarIds, at: SystemTime) {
        let value = record.duration.as_secs_f64();
        let bucket = self
            .bounds
            .iter()
            .position(|bound| value <= *bound)
            .unwrap_or(self.bounds.len());
        let series = Series {
            method: record.method,
            route: record.route.cloned(),
            status: record.status,
            component: record.component.cloned(),
            error_type: record.error_type,
        };
        let mut all = self.series.lock().unwrap_or_else(|p| p.into_inner());
        let buckets = all
            .entry(series)
            .or_insert_with(|| vec![None; self.bounds.len() + 1]);
        buckets[bucket] = Some(Exemplar { ids, value, at });
    }

    /// Every series' exemplars by bucket, keyed by its labels as exposed.
    pub fn snapshot(&self) -> HashMap<SeriesLabels, Vec<Option<Exemplar>>> {
        let all = self.series.lock().unwrap_or_else(|p| p.into_inner());
        all.iter()
            .map(|(series, buckets)| (labels(series), buckets.clone()))
            .collect()
    }
}

fn labels(series: &Series) -> SeriesLabels {
    [
        series.method.to_owned(),
        series
            .route
            .as_deref()
            .unwrap_or(UNMATCHED_ROUTE)
            .to_owned(),
        series.status.to_string(),
        series.component.as_deref().unwrap_or("").to_owned(),
        series.error_type.unwrap_or("").to_owned(),
    ]
}

/// The exposition's label names of [`SeriesLabels`], in order.
pub const SERIES_LABEL_NAMES: [&str; 5] = [
    "http_request_method",
    "http_route",
    "http_response_status_code",
    "spin_component",
    "error_type",
];

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn record(route: &Arc<str>, millis: u64) -> RequestRecord<'_> {
        RequestRecord {
            method: "GET",
            route: Some(route),
            component: None,
            series: None,
            status: 200,
            error_type: None,
            duration: Duration::from_millis(millis),
            request_bytes: 0,
            response_bytes: 0,
            exemplar: None,
        }
    }

    fn ids(n: u128) -> ExemplarIds {
        ExemplarIds {
            trace_id: TraceId::from_bits(n),
            span_id: SpanId::from_bits(n),
        }
    }

    #[test]
    fn keeps_the_latest_exemplar_of_each_bucket() {
        let exemplars = Exemplars::new(&[0.01, 0.1]);
        let route: Arc<str> = "/heroes/:id".into();
        let at = SystemTime::UNIX_EPOCH;
        exemplars.record(&record(&route, 5), ids(1), at);
        exemplars.record(&record(&route, 7), ids(2), at);
        exemplars.record(&record(&route, 50), ids(3), at);
        exemplars.record(&record(&route, 5000), ids(4), at);
        let snapshot = exemplars.snapshot();
        let key = [
            "GET".to_owned(),
            "/heroes/:id".to_owned(),
            "200".to_owned(),
            String::new(),
            String::new(),
        ];
        let buckets = &snapshot[&key];
        let kept: Vec<_> = buckets
            .iter()
            .map(|e| e.map(|e| (e.ids, e.value)))
            .collect();
        assert_eq!(
            kept,
            [
                Some((ids(2), 0.007)),
                Some((ids(3), 0.05)),
                Some((ids(4), 5.0))
            ]
        );
    }

    #[test]
    fn unmatched_routes_are_keyed_as_exposed() {
        let exemplars = Exemplars::new(&[1.0]);
        let route: Arc<str> = "x".into();
        let mut unmatched = record(&route, 1);
        unmatched.route = None;
        unmatched.status = 404;
        exemplars.record(&unmatched, ids(9), SystemTime::UNIX_EPOCH);
        let key = exemplars.snapshot().into_keys().next().unwrap();
        assert_eq!(key[1], UNMATCHED_ROUTE);
        assert_eq!(key[2], "404");
    }
}
