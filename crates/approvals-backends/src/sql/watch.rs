//! Waking the waiters of a request when it changes, in this process or another.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use approvals_core::RequestId;
use tokio::sync::Notify;

/// The requests someone in this process is waiting on, each with a [`Notify`] that wakes
/// its waiters whenever the request may have changed: at once for changes made here, and
/// when the database reports a change from elsewhere (Postgres NOTIFY, SQLite's change
/// stamps).
///
/// A waiter makes its [`Notify::notified`] future *before* reading the row, so a change
/// committed between its read and its wait still wakes it; a wake only means "read again".
/// A `Notify` (48 bytes with its `Arc`) rather than a `watch` channel (352 bytes, most of
/// them wakers' slots): with 100,000 calls waiting, each holds one.
#[derive(Debug, Default)]
pub(crate) struct Watchers {
    map: Mutex<Map>,
}

#[derive(Debug, Default)]
struct Map {
    /// Each request's `Notify`; the waiters hold the other references to it.
    senders: HashMap<RequestId, Arc<Notify>>,
    /// How many entries the last sweep left: the next sweep waits until there are twice as
    /// many, so that subscribing costs the same whatever the number of waiters.
    swept: usize,
}

impl Watchers {
    fn lock(&self) -> MutexGuard<'_, Map> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Subscribes to changes of `id`: what [`Watchers::bump`] wakes.
    pub(crate) fn subscribe(&self, id: RequestId) -> Arc<Notify> {
        let mut map = self.lock();
        // Drop entries nobody waits on any more, so the map stays within twice the size of
        // the waiters. Not at every subscription: with 100,000 calls waiting, sweeping all
        // of them for each new one made starting to wait cost the number of waiters.
        if map.senders.len() >= (2 * map.swept).max(64) {
            map.senders.retain(|_, tx| waited_on(tx));
            map.swept = map.senders.len();
        }
        Arc::clone(map.senders.entry(id).or_default())
    }

    /// Wakes the waiters of `id`, if any.
    pub(crate) fn bump(&self, id: RequestId) {
        if let Some(tx) = self.lock().senders.get(&id) {
            tx.notify_waiters();
        }
    }

    /// Wakes every waiter (after a change from another process that does not say which
    /// request, or after a lost connection, when a notification may have been missed).
    pub(crate) fn bump_all(&self) {
        for tx in self.lock().senders.values() {
            tx.notify_waiters();
        }
    }

    /// Whether anyone waits at all.
    #[cfg(feature = "sqlite")]
    pub(crate) fn any(&self) -> bool {
        self.lock().senders.values().any(waited_on)
    }
}

/// Whether a waiter still holds `tx` (the map holds one reference).
fn waited_on(tx: &Arc<Notify>) -> bool {
    Arc::strong_count(tx) > 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;

    #[test]
    fn a_bump_wakes_the_waiters_of_that_request_and_no_others() {
        let watchers = Watchers::default();
        let (a, b) = (RequestId::generate(), RequestId::generate());
        let (on_a, on_b) = (watchers.subscribe(a), watchers.subscribe(b));
        // Made before the bump and not yet polled, as a waiter makes it before its read.
        let mut woken_a = std::pin::pin!(on_a.notified());
        let mut woken_b = std::pin::pin!(on_b.notified());
        watchers.bump(a);
        assert!(woken_a.as_mut().now_or_never().is_some());
        assert!(woken_b.as_mut().now_or_never().is_none());
        watchers.bump_all();
        assert!(woken_b.as_mut().now_or_never().is_some());
    }

    #[test]
    fn two_waiters_of_one_request_share_its_notify_and_are_both_woken() {
        let watchers = Watchers::default();
        let id = RequestId::generate();
        let (first, second) = (watchers.subscribe(id), watchers.subscribe(id));
        assert!(Arc::ptr_eq(&first, &second));
        let mut one = std::pin::pin!(first.notified());
        let mut two = std::pin::pin!(second.notified());
        watchers.bump(id);
        assert!(one.as_mut().now_or_never().is_some());
        assert!(two.as_mut().now_or_never().is_some());
    }

    #[test]
    fn entries_nobody_waits_on_are_swept_and_not_counted() {
        let watchers = Watchers::default();
        let held = watchers.subscribe(RequestId::generate());
        for _ in 0..200 {
            drop(watchers.subscribe(RequestId::generate()));
        }
        assert!(watchers.any());
        // Sweeps run when the map doubles: it never holds more than twice the waiters
        // plus the floor of 64, however many came and went.
        assert!(
            watchers.lock().senders.len() <= 2 * 64,
            "{}",
            watchers.lock().senders.len()
        );
        drop(held);
        assert!(!watchers.any());
    }
}
