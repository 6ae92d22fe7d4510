//! What a finished request records: the in-flight count, its three
//! histograms (through its route's bound series when it has one) and its
//! exemplar.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use opentelemetry::KeyValue;

use super::Metrics;
use super::exemplars::ExemplarIds;
use super::series::{BoundRequest, RouteSeries, SeriesKey};

/// What one finished HTTP request records.
pub struct RequestRecord<'a> {
    /// Normalized method (`GET`, ..., `_OTHER`).
    pub method: &'static str,
    /// The matched route, or `None` when no route matched.
    pub route: Option<&'a Arc<str>>,
    /// The component that served it, if any.
    pub component: Option<&'a Arc<str>>,
    /// The request histograms bound for its route, when a route matched.
    pub series: Option<&'a RouteSeries>,
    /// Response status.
    pub status: u16,
    /// `error.type` when the request failed (5xx, timeout, client gone).
    pub error_type: Option<&'static str>,
    /// Time from receiving the request head to the end of the response.
    pub duration: Duration,
    /// Request body bytes read.
    pub request_bytes: u64,
    /// Response body bytes written.
    pub response_bytes: u64,
    /// The trace of a sampled request, kept as the exemplar of its bucket.
    pub exemplar: Option<ExemplarIds>,
}

/// The `http_route` value when no route matched: one series for all
/// unmatched paths, never the raw path.
pub const UNMATCHED_ROUTE: &str = "unmatched";

impl Metrics {
    /// A request started; call [`Metrics::request_finished`] once for it.
    pub fn request_started(&self, method: &'static str) {
        if self.enabled {
            self.active_requests.add(method, 1);
        }
    }

    /// A request finished, whatever its outcome.
    pub fn request_finished(&self, record: &RequestRecord<'_>) {
        if !self.enabled {
            return;
        }
        self.active_requests.add(record.method, -1);
        self.request_rejected(record);
    }

    /// A request refused before it was served (hyper answered a malformed
    /// one): recorded like a finished request, never counted in flight.
    pub fn request_rejected(&self, record: &RequestRecord<'_>) {
        if !self.enabled {
            return;
        }
        let key = SeriesKey {
            method: record.method,
            status: record.status,
            error_type: record.error_type,
        };
        let recorded = record.series.is_some_and(|series| {
            series.record(
                key,
                || self.bind_request(record),
                |bound| {
                    bound.duration.record(record.duration.as_secs_f64());
                    bound.request_body.record(record.request_bytes);
                    bound.response_body.record(record.response_bytes);
                },
            )
        });
        if !recorded {
            with_request_attributes(record, |attributes| {
                self.request_duration
                    .record(record.duration.as_secs_f64(), attributes);
                self.request_body_size
                    .record(record.request_bytes, attributes);
                self.response_body_size
                    .record(record.response_bytes, attributes);
            });
        }
        if let Some(ids) = record.exemplar {
            self.exemplars.record(record, ids, SystemTime::now());
        }
    }

    /// The three request histograms bound to `record`'s attributes.
    fn bind_request(&self, record: &RequestRecord<'_>) -> BoundRequest {
        with_request_attributes(record, |attributes| BoundRequest {
            duration: self.request_duration.bind(attributes),
            request_body: self.request_body_size.bind(attributes),
            response_body: self.response_body_size.bind(attributes),
        })
    }
}

/// Hands `use_them` the attributes of a request's three histograms,
/// `error.type` last when it failed.
fn with_request_attributes<T>(
    record: &RequestRecord<'_>,
    use_them: impl FnOnce(&[KeyValue]) -> T,
) -> T {
    let route = record.route.map_or_else(
        || KeyValue::new("http.route", UNMATCHED_ROUTE),
        |r| KeyValue::new("http.route", r.clone()),
    );
    let component = record.component.map_or_else(
        || KeyValue::new("spin.component", ""),
        |c| KeyValue::new("spin.component", c.clone()),
    );
    let base = [
        KeyValue::new("http.request.method", record.method),
        route,
        KeyValue::new("http.response.status_code", i64::from(record.status)),
        KeyValue::new("url.scheme", "http"),
        component,
    ];
    match record.error_type {
        None => use_them(&base),
        Some(error) => {
            let [a, b, c, d, e] = base;
            use_them(&[a, b, c, d, e, KeyValue::new("error.type", error)])
        }
    }
}
