//! POST, PUT and DELETE: each logs its intent, then changes the hero with a
//! compare-and-swap (see the module docs of [`super`]).

use crate::error::ApiError;
use crate::hero::{Hero, HeroId, NewHero};
use crate::store::{KeyValue, Swapped, Watched};

use super::codec::{Intent, LogHead, Standing};
use super::log::new_op;
use super::{MAX_ATTEMPTS, Registry, TOMBSTONE, WRITE_DEADLINE_MS, millis};

/// The intents this request logged: the latest one's `before` and time,
/// every op (oldest first), and the head of the log as the latest left it.
struct Logged {
    before: Standing,
    at_ms: u64,
    ops: Vec<u64>,
    log: LogHead,
}

impl<S: KeyValue> Registry<'_, S> {
    /// Stores a new hero and returns its stored value.
    pub async fn create(&self, input: NewHero) -> Result<(HeroId, Vec<u8>), ApiError> {
        let now = (self.clock)();
        let id = HeroId::generate(now);
        let hero = Hero::new(id, input, now);
        let value = encode(&hero);
        let intent = Intent {
            op: new_op(),
            id: id.to_bytes(),
            at_ms: millis(now),
            before: Standing::Gone,
            after: Standing::Live(hero.team),
            done: false,
        };
        let log = self.log_intent(&intent).await?;
        self.check_deadline(millis(now))?;
        self.store.set(&id.key(), &value).await?;
        self.fold_if_due(&log).await;
        Ok((id, value))
    }

    /// Replaces a hero's fields; its new stored value, or `None` if there is
    /// no such hero.
    pub async fn replace(&self, id: HeroId, input: NewHero) -> Result<Option<Vec<u8>>, ApiError> {
        let key = id.key();
        let mut watched = self.store.watch(&key).await?;
        let mut logged: Option<Logged> = None;
        for _ in 0..MAX_ATTEMPTS {
            let Some(old) = live(&key, &watched)? else {
                return Ok(None);
            };
            let hero = old.clone().replaced(input.clone());
            // Logged even when the team stays: the leaves of every hero
            // carry its value, which this swap changes.
            let before = Standing::Live(old.team);
            self.log_once(&mut logged, id, before, Standing::Live(hero.team.clone()))
                .await?;
            let value = encode(&hero);
            match self.store.swap(watched.handle, &value).await? {
                Swapped::Done => {
                    if let Some(logged) = logged {
                        self.settle(logged).await;
                    }
                    return Ok(Some(value));
                }
                Swapped::Conflict(next) => watched = next,
            }
        }
        Err(ApiError::Unavailable(format!("{key} kept changing")))
    }

    /// Deletes a hero; whether there was one.
    pub async fn remove(&self, id: HeroId) -> Result<bool, ApiError> {
        let key = id.key();
        let mut watched = self.store.watch(&key).await?;
        let mut logged: Option<Logged> = None;
        for _ in 0..MAX_ATTEMPTS {
            let Some(old) = live(&key, &watched)? else {
                return Ok(false);
            };
            self.log_once(&mut logged, id, Standing::Live(old.team), Standing::Gone)
                .await?;
            match self.store.swap(watched.handle, TOMBSTONE).await? {
                Swapped::Done => {
                    if let Some(logged) = logged {
                        self.fold_if_due(&logged.log).await;
                    }
                    return Ok(true);
                }
                Swapped::Conflict(next) => watched = next,
            }
        }
        Err(ApiError::Unavailable(format!("{key} kept changing")))
    }

    /// Logs `before -> after` unless this request already logged a move
    /// from `before` (a retried swap that found the same team needs no new
    /// intent), then checks the deadline of the intent in force.
    async fn log_once(
        &self,
        logged: &mut Option<Logged>,
        id: HeroId,
        before: Standing,
        after: Standing,
    ) -> Result<(), ApiError> {
        if logged.as_ref().is_none_or(|logged| logged.before != before) {
            let at_ms = self.now_ms();
            let op = new_op();
            let intent = Intent {
                op,
                id: id.to_bytes(),
                at_ms,
                before: before.clone(),
                after,
                done: false,
            };
            let log = self.log_intent(&intent).await?;
            let mut ops = logged.take().map(|logged| logged.ops).unwrap_or_default();
            ops.push(op);
            *logged = Some(Logged {
                before,
                at_ms,
                ops,
                log,
            });
        }
        let at_ms = logged.as_ref().map_or(0, |logged| logged.at_ms);
        self.check_deadline(at_ms)
    }

    /// After a PUT's swap: marks its intents done (it will never swap for
    /// them again, so a fold may finish them), then folds if due. A failure
    /// leaves the intents to finish when stale, so it is only logged.
    async fn settle(&self, logged: Logged) {
        let log = match self.mark_done(&logged.ops).await {
            Ok(log) => log.unwrap_or(logged.log),
            Err(error) => {
                let error = format!("{error:?}");
                crate::routes::log_line(
                    "warn",
                    "marking intents done failed",
                    &[("error", &error)],
                );
                logged.log
            }
        };
        self.fold_if_due(&log).await;
    }

    /// Refuses to write for an intent logged at `at_ms` once a fold may
    /// treat it as abandoned.
    fn check_deadline(&self, at_ms: u64) -> Result<(), ApiError> {
        if self.now_ms().saturating_sub(at_ms) > WRITE_DEADLINE_MS {
            Err(ApiError::Unavailable(
                "the write took too long after logging its intent".into(),
            ))
        } else {
            Ok(())
        }
    }
}

/// The hero a compare-and-swap watched, `None` if absent or deleted.
fn live<H>(key: &str, watched: &Watched<H>) -> Result<Option<Hero>, ApiError> {
    match watched.current.as_deref() {
        None | Some(TOMBSTONE) => Ok(None),
        Some(value) => serde_json::from_slice(value)
            .map(Some)
            .map_err(|e| ApiError::Internal(format!("stored value of {key} is not a hero: {e}"))),
    }
}

/// A hero's stored value: the JSON the API returns.
pub fn encode(hero: &Hero) -> Vec<u8> {
    serde_json::to_vec(hero).expect("a hero is plain strings and always serializes")
}
