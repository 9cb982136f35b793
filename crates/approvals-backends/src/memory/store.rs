use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use approvals_core::store::{Attach, Change, GrantChange, Session, Store};
use approvals_core::{
    ApprovalRequest, Digest, Grant, GrantId, RequestId, StoreError, Timestamp, tally,
};
use async_trait::async_trait;
use tokio::sync::Notify;

/// A [`Store`] in process memory. Nothing survives the process.
///
/// A request that a call waits on has a [`Notify`] beside it, so waiters wake on every
/// change without polling.
///
/// ```
/// use approvals_backends::memory::MemoryStore;
/// let store = MemoryStore::new();
/// ```
#[derive(Debug, Default)]
pub struct MemoryStore {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    requests: BTreeMap<RequestId, Entry>,
    /// Requests by (requester id, digest), for re-attachment.
    by_call: HashMap<(String, Digest), Vec<RequestId>>,
    /// Standing grants, by id (ULIDs: oldest first).
    grants: BTreeMap<GrantId, Grant>,
    /// Console sessions, by key.
    sessions: HashMap<String, Session>,
    /// The pending requests' ids, oldest first: listing what waits (and what is due) costs
    /// what waits, not every request ever made.
    open: std::collections::BTreeSet<RequestId>,
}

/// One request, boxed (a map's node keeps room for eleven of what it holds), and what wakes
/// the calls that wait on it: made by the first of them, so a request nobody waits on pays
/// for none (a `watch` channel for each cost 1.2 KB, most of it wakers' slots).
#[derive(Debug)]
struct Entry {
    request: Box<ApprovalRequest>,
    changed: Option<Arc<Notify>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere while holding the lock cannot leave a request half-changed:
        // changes are made on a copy and swapped in whole.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn create_or_attach(&self, request: ApprovalRequest) -> Result<Attach, StoreError> {
        let mut state = self.lock();
        let key = (request.context.requester.id.clone(), request.action.digest);
        if let Some(ids) = state.by_call.get(&key) {
            // Newest first: the latest attachable request wins.
            for id in ids.iter().rev() {
                if let Some(entry) = state.requests.get(id) {
                    let existing = &*entry.request;
                    if tally::attachable(existing, &request) {
                        return Ok(Attach {
                            request: existing.clone(),
                            created: false,
                        });
                    }
                }
            }
        }
        let id = request.id;
        state.by_call.entry(key).or_default().push(id);
        if request.is_pending() {
            state.open.insert(id);
        }
        state.requests.insert(
            id,
            Entry {
                request: Box::new(request.clone()),
                changed: None,
            },
        );
        Ok(Attach {
            request,
            created: true,
        })
    }

    async fn get(&self, id: RequestId) -> Result<Option<ApprovalRequest>, StoreError> {
        Ok(self
            .lock()
            .requests
            .get(&id)
            .map(|e| ApprovalRequest::clone(&e.request)))
    }

    async fn update(
        &self,
        id: RequestId,
        change: Change<'_>,
    ) -> Result<ApprovalRequest, StoreError> {
        let mut state = self.lock();
        let entry = state
            .requests
            .get_mut(&id)
            .ok_or(StoreError::UnknownRequest(id))?;
        let mut request = ApprovalRequest::clone(&entry.request);
        let before = request.version;
        change(&mut request);
        if request.version != before {
            *entry.request = request.clone();
            if let Some(changed) = &entry.changed {
                changed.notify_waiters();
            }
            if !request.is_pending() {
                state.open.remove(&id);
            }
        }
        Ok(request)
    }

    async fn wait_for_change(
        &self,
        id: RequestId,
        seen_version: u64,
    ) -> Result<ApprovalRequest, StoreError> {
        let changed = {
            let mut state = self.lock();
            let entry = state
                .requests
                .get_mut(&id)
                .ok_or(StoreError::UnknownRequest(id))?;
            Arc::clone(entry.changed.get_or_insert_with(Default::default))
        };
        loop {
            // Made before the request is read: a change after the read wakes it.
            let notified = changed.notified();
            {
                let state = self.lock();
                let entry = state
                    .requests
                    .get(&id)
                    .ok_or(StoreError::UnknownRequest(id))?;
                if entry.request.version > seen_version {
                    return Ok(ApprovalRequest::clone(&entry.request));
                }
            }
            notified.await;
        }
    }

    async fn list_open(&self) -> Result<Vec<ApprovalRequest>, StoreError> {
        let state = self.lock();
        Ok(state
            .open
            .iter()
            .filter_map(|id| state.requests.get(id))
            .map(|e| ApprovalRequest::clone(&e.request))
            .filter(ApprovalRequest::is_pending)
            .collect())
    }

    async fn list_decided(&self, limit: usize) -> Result<Vec<ApprovalRequest>, StoreError> {
        Ok(self
            .lock()
            .requests
            .values()
            .rev()
            .map(|e| ApprovalRequest::clone(&e.request))
            .filter(|r| !r.is_pending())
            .take(limit)
            .collect())
    }

    async fn due(&self, now: Timestamp) -> Result<Vec<RequestId>, StoreError> {
        // Only a pending request has something due.
        let state = self.lock();
        Ok(state
            .open
            .iter()
            .filter_map(|id| state.requests.get(id))
            .filter_map(|e| {
                let r = &e.request;
                r.next_due().is_some_and(|t| t <= now).then_some(r.id)
            })
            .collect())
    }

    async fn insert_grant(&self, grant: Grant) -> Result<(), StoreError> {
        self.lock().grants.insert(grant.id, grant);
        Ok(())
    }

    async fn grants_for(
        &self,
        requester: &str,
        policy: &str,
        action: &str,
    ) -> Result<Vec<Grant>, StoreError> {
        Ok(self
            .lock()
            .grants
            .values()
            .filter(|g| g.requester.id == requester && g.policy == policy && g.action == action)
            .cloned()
            .collect())
    }

    async fn update_grant(
        &self,
        id: GrantId,
        change: GrantChange<'_>,
    ) -> Result<Grant, StoreError> {
        let mut state = self.lock();
        let grant = state
            .grants
            .get_mut(&id)
            .ok_or(StoreError::UnknownGrant(id))?;
        // Changed on a copy and swapped in whole, like requests.
        let mut copy = grant.clone();
        if change(&mut copy) {
            *grant = copy.clone();
        }
        Ok(copy)
    }

    async fn grants(&self) -> Result<Vec<Grant>, StoreError> {
        Ok(self.lock().grants.values().cloned().collect())
    }

    async fn put_session(&self, key: &str, session: &Session) -> Result<(), StoreError> {
        self.lock().sessions.insert(key.to_owned(), session.clone());
        Ok(())
    }

    async fn session(&self, key: &str, now: Timestamp) -> Result<Option<Session>, StoreError> {
        Ok(self
            .lock()
            .sessions
            .get(key)
            .filter(|s| s.expires_at > now)
            .cloned())
    }

    async fn end_session(&self, key: &str, now: Timestamp) -> Result<(), StoreError> {
        let mut state = self.lock();
        state.sessions.remove(key);
        state.sessions.retain(|_, s| s.expires_at > now);
        Ok(())
    }
}
