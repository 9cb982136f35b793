//! Waking the waiters of a request when it changes, in this process or another.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use approvals_core::RequestId;
use tokio::sync::watch;

/// The requests someone in this process is waiting on, each with a counter that is bumped
/// whenever the request may have changed: at once for changes made here, and when the
/// database reports a change from elsewhere (Postgres NOTIFY, SQLite's `data_version`).
///
/// A waiter subscribes *before* reading the row, so a change committed between its read
/// and its wait still wakes it; a bump only means "read again".
#[derive(Debug, Default)]
pub(crate) struct Watchers {
    map: Mutex<Map>,
}

#[derive(Debug, Default)]
struct Map {
    senders: HashMap<RequestId, watch::Sender<u64>>,
    /// How many entries the last sweep left: the next sweep waits until there are twice as
    /// many, so that subscribing costs the same whatever the number of waiters.
    swept: usize,
}

impl Watchers {
    fn lock(&self) -> MutexGuard<'_, Map> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Subscribes to changes of `id`.
    pub(crate) fn subscribe(&self, id: RequestId) -> watch::Receiver<u64> {
        let mut map = self.lock();
        // Drop entries nobody waits on any more, so the map stays within twice the size of
        // the waiters. Not at every subscription: with 100,000 calls waiting, sweeping all
        // of them for each new one made starting to wait cost the number of waiters.
        if map.senders.len() >= (2 * map.swept).max(64) {
            map.senders.retain(|_, tx| tx.receiver_count() > 0);
            map.swept = map.senders.len();
        }
        map.senders
            .entry(id)
            .or_insert_with(|| watch::Sender::new(0))
            .subscribe()
    }

    /// Wakes the waiters of `id`, if any.
    pub(crate) fn bump(&self, id: RequestId) {
        if let Some(tx) = self.lock().senders.get(&id) {
            tx.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    /// Wakes every waiter (after a change from another process that does not say which
    /// request, or after a lost connection, when a notification may have been missed).
    pub(crate) fn bump_all(&self) {
        for tx in self.lock().senders.values() {
            tx.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    /// Whether anyone waits at all.
    #[cfg(feature = "sqlite")]
    pub(crate) fn any(&self) -> bool {
        self.lock()
            .senders
            .values()
            .any(|tx| tx.receiver_count() > 0)
    }
}
