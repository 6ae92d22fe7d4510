//! The intent log: appending an intent, the fold lease, and removing the
//! intents a fold finished. Every change is a compare-and-swap on
//! `heroes:log`, retried on the value a conflict returns.

use std::collections::HashSet;

use super::codec::{Intent, LOG_KEY, Lease, Log, LogHead, append_to_log, decode_log, encode_log};
use super::{LEASE_MS, MAX_ATTEMPTS, Registry, random_u64};
use crate::error::ApiError;
use crate::store::{KeyValue, Swapped, Watched};

/// Replaces the log's stored bytes with what `next` makes of them, by
/// compare-and-swap, until a swap sticks. `next` returns the bytes to write
/// (`None`: leave the log as it is) and what to return. Returns `None` if
/// there is no log (the store was never indexed).
async fn swap_log<S: KeyValue, T>(
    store: &S,
    mut next: impl FnMut(&[u8]) -> Result<(Option<Vec<u8>>, T), ApiError>,
) -> Result<Option<T>, ApiError> {
    let mut watched: Watched<S::Swap> = store.watch(LOG_KEY).await?;
    for _ in 0..MAX_ATTEMPTS {
        let Some(bytes) = &watched.current else {
            return Ok(None);
        };
        let (write, result) = next(bytes)?;
        let Some(write) = write else {
            return Ok(Some(result));
        };
        match store.swap(watched.handle, &write).await? {
            Swapped::Done => return Ok(Some(result)),
            Swapped::Conflict(next) => watched = next,
        }
    }
    Err(ApiError::Unavailable(
        "the intent log kept changing under this request".into(),
    ))
}

/// Applies `change` to the log with compare-and-swap until it sticks.
/// `change` returns `None` to leave the log as it is (then nothing is
/// written). Returns the log as stored afterwards and what `change` said,
/// or `None` if there is no log (the store was never indexed).
pub async fn update_log<S: KeyValue, T>(
    store: &S,
    mut change: impl FnMut(&mut Log) -> Option<T>,
) -> Result<Option<(Log, Option<T>)>, ApiError> {
    swap_log(store, |bytes| {
        let mut log = decode_log(bytes)?;
        let result = change(&mut log);
        let write = result.is_some().then(|| encode_log(&log));
        Ok((write, (log, result)))
    })
    .await
}

/// Appends `intent` to the log with compare-and-swap until it sticks,
/// without decoding the intents already there. Returns the head of the log
/// as stored with it, or `None` if there is no log.
async fn append_intent<S: KeyValue>(
    store: &S,
    intent: &Intent,
) -> Result<Option<LogHead>, ApiError> {
    swap_log(store, |bytes| {
        let (appended, head) = append_to_log(bytes, intent)?;
        Ok((Some(appended), head))
    })
    .await
}

impl<S: KeyValue> Registry<'_, S> {
    /// Appends `intent`, indexing the store first if it never was. Returns
    /// the head of the log as stored with it.
    pub(super) async fn log_intent(&self, intent: &Intent) -> Result<LogHead, ApiError> {
        for _ in 0..2 {
            match append_intent(self.store, intent).await? {
                Some(head) => return Ok(head),
                None => self.ensure_indexed().await?,
            }
        }
        Err(ApiError::Internal("the intent log vanished".into()))
    }

    /// Marks the intents `ops` names done; the head of the log as stored
    /// afterwards, or `None` if there was nothing to mark (a fold finished
    /// them already).
    pub(super) async fn mark_done(&self, ops: &[u64]) -> Result<Option<LogHead>, ApiError> {
        let updated = update_log(self.store, |log| {
            let mut marked = false;
            for intent in &mut log.intents {
                if !intent.done && ops.contains(&intent.op) {
                    intent.done = true;
                    marked = true;
                }
            }
            marked.then_some(())
        })
        .await?;
        Ok(updated.and_then(|(log, marked)| marked.map(|()| log.head())))
    }

    /// Takes the fold lease unless another request holds it (or the store
    /// is being indexed): the lease, and the log as it stood when taken.
    pub(super) async fn take_fold_lease(&self) -> Result<Option<(Lease, Log)>, ApiError> {
        let now = self.now_ms();
        let lease = Lease {
            owner: new_op(),
            until_ms: now + LEASE_MS,
        };
        let updated = update_log(self.store, |log| {
            let busy = log.fold.is_some_and(|lease| lease.holds(now)) || log.indexing.is_some();
            if busy {
                return None;
            }
            log.fold = Some(lease);
            Some(())
        })
        .await?;
        Ok(updated.and_then(|(log, taken)| taken.map(|()| (lease, log))))
    }

    /// Releases the fold lease of `owner` without removing anything, after
    /// a fold failed, so the next write need not wait for it to expire.
    pub(super) async fn release_fold_lease(&self, owner: u64) -> Result<(), ApiError> {
        update_log(self.store, |log| {
            let ours = log.fold.is_some_and(|lease| lease.owner == owner);
            ours.then(|| log.fold = None)
        })
        .await?;
        Ok(())
    }

    /// Removes the intents a fold finished (by op id: intents logged since
    /// stay) and releases the lease if `owner` still holds it.
    pub(super) async fn finish_fold(
        &self,
        owner: u64,
        finished: &HashSet<u64>,
    ) -> Result<Log, ApiError> {
        let updated = update_log(self.store, |log| {
            log.intents.retain(|intent| !finished.contains(&intent.op));
            if log.fold.is_some_and(|lease| lease.owner == owner) {
                log.fold = None;
            }
            log.kept = u32::try_from(log.intents.len()).unwrap_or(u32::MAX);
            Some(())
        })
        .await?;
        let (log, _) = updated
            .ok_or_else(|| ApiError::Internal("the intent log vanished during a fold".into()))?;
        Ok(log)
    }
}

/// A fresh id for an intent or a lease.
pub fn new_op() -> u64 {
    random_u64()
}
