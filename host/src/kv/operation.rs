//! One key-value operation as every interface runs it: timed into
//! `key_value_operation_duration_seconds`, traced as a client span when its
//! request is sampled, and a failure logged on the host, reported to the
//! request it ran under and given to the guest as a short message.

use std::sync::Arc;
use std::time::{Duration, Instant};

use opentelemetry::trace::SpanKind;

use super::{KeyValueFailure, KeyValueFailures, LabeledStore, StoreError, WriterId};
use crate::telemetry::metrics::Metrics;
use crate::telemetry::traces::{ChildSpan, SpanParent};

/// What one operation needs from the store data: the opened store behind a
/// handle, the instruments, and who is told of a failure.
pub struct Operation {
    pub(super) store: Arc<LabeledStore>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) failures: Arc<dyn KeyValueFailures>,
    pub(super) caller: WriterId,
    /// Whether the operation runs in a call of a synchronous WIT function,
    /// during which the guest's instance can run nothing else.
    pub(super) blocks_instance: bool,
}

/// How long a synchronous call may wait on its backend before its instance
/// counts as stalled (see [`KeyValueFailures::stall_started`]): far above a
/// healthy operation, far below a wait for a lock or a slow server.
const STALL_AFTER: Duration = Duration::from_millis(5);

/// Ends a stall when dropped, also when the call is cancelled.
struct StallEnds<'a>(&'a dyn KeyValueFailures);

impl Drop for StallEnds<'_> {
    fn drop(&mut self) {
        self.0.stall_ended();
    }
}

/// Runs `work`, telling `failures` when it has waited past [`STALL_AFTER`]
/// and when it ends.
async fn watching_stall<R>(work: impl Future<Output = R>, failures: &dyn KeyValueFailures) -> R {
    let mut work = std::pin::pin!(work);
    match tokio::time::timeout(STALL_AFTER, work.as_mut()).await {
        Ok(done) => done,
        Err(_) => {
            failures.stall_started();
            let _ends = StallEnds(failures);
            work.await
        }
    }
}

/// A failed backend operation as the guest sees it: a short message (the
/// detail went to the host's log and the request's invocation line).
pub struct FailedOperation(pub String);

/// Runs one backend operation, timing it (`key_value_operation_duration_seconds`)
/// and turning a failure into a [`FailedOperation`], with the detail logged
/// and reported to the request.
pub async fn timed<R>(
    context: Operation,
    operation: &'static str,
    run: impl AsyncFnOnce(&LabeledStore) -> Result<R, StoreError>,
) -> Result<R, FailedOperation> {
    let Operation {
        store,
        metrics,
        failures,
        caller,
        blocks_instance,
    } = context;
    let backend = store.backend.kind();
    let span = failures
        .span_parent(caller)
        .map(|parent| operation_span(&parent, &store, operation));
    let started = Instant::now();
    let result = if blocks_instance {
        watching_stall(run(&store), &*failures).await
    } else {
        run(&store).await
    };
    metrics.key_value_operation(
        &store.label,
        backend,
        operation,
        result.is_ok(),
        started.elapsed(),
        Some(&store.series),
    );
    if let Some(mut span) = span {
        if let Err(error) = &result {
            let kind = if error.is_busy() { "busy" } else { "_OTHER" };
            span.fail(kind, error.to_string());
        }
        span.end();
    }
    result.map_err(|error| {
        tracing::warn!(store = &*store.label, backend, operation, error = %error, "key-value operation failed");
        failures.failed(caller, KeyValueFailure {
            store: store.label.clone(),
            backend,
            operation,
            error: error.to_string(),
        });
        FailedOperation(match error {
            StoreError::Refused(reason) => reason.to_owned(),
            StoreError::Sqlite(_) | StoreError::Redis(_) => {
                format!("the key-value store `{}` is unavailable", store.label)
            }
        })
    })
}

/// The span of one operation (a client span, as Spin names it).
fn operation_span(parent: &SpanParent, store: &LabeledStore, operation: &'static str) -> ChildSpan {
    let backend = store.backend.kind();
    parent.start(
        format!("spin_key_value.{operation}"),
        SpanKind::Client,
        vec![
            opentelemetry::KeyValue::new("key_value.store", store.label.clone()),
            opentelemetry::KeyValue::new("key_value.backend", backend),
            opentelemetry::KeyValue::new("key_value.operation", operation),
            opentelemetry::KeyValue::new("db.system.name", backend),
            opentelemetry::KeyValue::new("db.operation.name", operation),
        ],
    )
}
