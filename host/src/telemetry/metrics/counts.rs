//! Counts read at scrape time rather than recorded through the SDK: requests
//! in flight by method, and guest invocations by component and reuse. The
//! request path only bumps atomics; the observable instruments read them.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use opentelemetry::KeyValue;
use opentelemetry::metrics::Meter;

/// The method labels [`normalize_method`] gives.
const METHODS: [&str; 10] = [
    "GET", "POST", "PUT", "DELETE", "HEAD", "PATCH", "OPTIONS", "CONNECT", "TRACE", "_OTHER",
];

/// Requests in flight, by method; a series appears once its method is seen.
#[derive(Default)]
pub(super) struct ActiveRequests {
    count: [AtomicI64; METHODS.len()],
    seen: [AtomicBool; METHODS.len()],
}

impl ActiveRequests {
    fn slot(method: &str) -> usize {
        METHODS
            .iter()
            .position(|m| *m == method)
            .unwrap_or(METHODS.len() - 1)
    }

    pub(super) fn add(&self, method: &str, delta: i64) {
        let slot = Self::slot(method);
        self.count[slot].fetch_add(delta, Ordering::Relaxed);
        if !self.seen[slot].load(Ordering::Relaxed) {
            self.seen[slot].store(true, Ordering::Relaxed);
        }
    }
}

/// Guest invocations of one component, by whether the instance was reused;
/// from [`Metrics::invocation_counts`].
#[derive(Default)]
pub struct InvocationCounts {
    pub(super) fresh: AtomicU64,
    pub(super) reused: AtomicU64,
}

/// Every component's invocation counts, read at scrape time.
pub(super) type RegisteredInvocations = Arc<Mutex<Vec<(Arc<str>, Arc<InvocationCounts>)>>>;

/// Registers `http.server.active_requests`, read from `active`.
pub(super) fn observe_active_requests(meter: &Meter, active: Arc<ActiveRequests>) {
    let _active = meter
        .i64_observable_up_down_counter("http.server.active_requests")
        .with_unit("{request}")
        .with_description("Number of HTTP server requests in flight.")
        .with_callback(move |observer| {
            for (slot, method) in METHODS.iter().enumerate() {
                if active.seen[slot].load(Ordering::Relaxed) {
                    observer.observe(
                        active.count[slot].load(Ordering::Relaxed),
                        &[
                            KeyValue::new("http.request.method", *method),
                            KeyValue::new("url.scheme", "http"),
                        ],
                    );
                }
            }
        })
        .build();
}

/// Registers `wasm.invocations`, read from every component's counts.
pub(super) fn observe_invocations(meter: &Meter, invocations: RegisteredInvocations) {
    let _invocations = meter
        .u64_observable_counter("wasm.invocations")
        .with_description(
            "Guest invocations, by whether the instance was reused from an earlier request.",
        )
        .with_callback(move |observer| {
            let components = invocations.lock().unwrap_or_else(PoisonError::into_inner);
            for (component, counts) in components.iter() {
                for (reused, count) in [(false, &counts.fresh), (true, &counts.reused)] {
                    let count = count.load(Ordering::Relaxed);
                    if count > 0 {
                        observer.observe(
                            count,
                            &[
                                KeyValue::new("spin.component", component.clone()),
                                KeyValue::new("wasm.instance.reused", reused),
                            ],
                        );
                    }
                }
            }
        })
        .build();
}

/// The method label: one of the standard methods, else `_OTHER`, so a client
/// cannot create series at will.
pub fn normalize_method(method: &http::Method) -> &'static str {
    match *method {
        http::Method::GET => "GET",
        http::Method::POST => "POST",
        http::Method::PUT => "PUT",
        http::Method::DELETE => "DELETE",
        http::Method::HEAD => "HEAD",
        http::Method::PATCH => "PATCH",
        http::Method::OPTIONS => "OPTIONS",
        http::Method::CONNECT => "CONNECT",
        http::Method::TRACE => "TRACE",
        _ => "_OTHER",
    }
}
