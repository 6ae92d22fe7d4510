//! Lanes: a component's requests go to one of a few `ProxyHandler`s, each
//! with its own instances, so that an instance stalled in a synchronous host
//! call does not hold up requests that other instances could serve.
//!
//! Why: a guest blocked in a call of a synchronous WIT function (a
//! `wasi:keyvalue` write waiting for another process's SQLite lock, a slow
//! Redis) holds its store, so its `ProxyHandler` worker cannot run and still
//! counts as available; the handler keeps queueing requests for it and starts
//! no new instance. The key-value host reports such a call once it has waited
//! a few milliseconds (`kv::operation`); while a lane has a stalled instance,
//! new requests take the next lane without one. Healthy traffic stays on the
//! first lane, so reuse is as before.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use wasmtime_wasi_http::handler::ProxyHandler;

use super::worker::ComponentHost;

/// Lanes per component: how many stalls at once new requests can route
/// around.
pub(super) const LANES: usize = 4;

/// One lane: a handler and the count of its stalled instances.
struct Lane {
    handler: ProxyHandler<ComponentHost>,
    stalls: Arc<AtomicUsize>,
}

/// A component's lanes.
pub(super) struct Lanes(Box<[Lane]>);

impl Lanes {
    /// [`LANES`] lanes; `host` makes a lane's instance factory from the
    /// counter its instances report stalls to.
    pub fn new(host: impl Fn(Arc<AtomicUsize>) -> ComponentHost) -> Self {
        Lanes(
            (0..LANES)
                .map(|_| {
                    let stalls = Arc::new(AtomicUsize::new(0));
                    Lane {
                        handler: ProxyHandler::new(host(stalls.clone())),
                        stalls,
                    }
                })
                .collect(),
        )
    }

    /// The handler for a new request: the first lane with no stalled
    /// instance, or else the least stalled.
    pub fn pick(&self) -> &ProxyHandler<ComponentHost> {
        let mut best = &self.0[0];
        let mut fewest = usize::MAX;
        for lane in &self.0 {
            let stalls = lane.stalls.load(Ordering::Relaxed);
            if stalls == 0 {
                return &lane.handler;
            }
            if stalls < fewest {
                (best, fewest) = (lane, stalls);
            }
        }
        &best.handler
    }
}
