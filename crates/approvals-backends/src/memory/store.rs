use std::collections::{BTreeMap, HashMap, hash_map};
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex, MutexGuard};

use approvals_core::store::{Attach, Change, GrantChange, Session, Store};
use approvals_core::text::{Packed, Packer};
use approvals_core::{
    ApprovalRequest, Digest, Grant, GrantId, RequestId, StoreError, Timestamp, tally,
};

use crate::stored::{decode_request, encode_request, readable};

/// The name this store gives itself in errors.
const BACKEND: &str = "memory";
use async_trait::async_trait;
use tokio::sync::Notify;

/// A [`Store`] in process memory. Nothing survives the process.
///
/// A request nobody has changed yet is kept as the JSON document the SQL stores keep in a
/// row, packed against the requests before it ([`Packer`]): 643 bytes of text for a small
/// call keep about 140, where the request as a value takes about 1.6 KB in a dozen
/// allocations. With many calls waiting, their requests are most of what the process
/// keeps. Once changed (reviewed, reported, decided) it is kept as a value, so the way from
/// a review to the resumed call decodes nothing twice. Reading and decoding happen outside
/// the lock: a reader takes a shared handle to what is kept, and a change is made on a copy
/// and put back only if nothing changed the request meanwhile, else made again, so callers
/// do not queue behind each other's JSON. A request that a call waits on has a [`Notify`]
/// beside it, so waiters wake on every change without polling.
///
/// ```
/// use approvals_backends::memory::MemoryStore;
/// let store = MemoryStore::new();
/// ```
#[derive(Debug, Default)]
pub struct MemoryStore {
    state: Mutex<State>,
    packer: Packer,
}

#[derive(Debug, Default)]
struct State {
    requests: BTreeMap<RequestId, Entry>,
    /// Requests by the call they were made for, for re-attachment.
    by_call: ByCall,
    /// Standing grants, by id (ULIDs: oldest first).
    grants: BTreeMap<GrantId, Grant>,
    /// Console sessions, by key.
    sessions: HashMap<String, Session>,
    /// The pending requests' ids, oldest first, each with when it next has something due:
    /// listing what waits (and what is due) costs what waits, not every request ever made,
    /// and finding what is due reads no request.
    open: BTreeMap<RequestId, Option<Timestamp>>,
}

/// One request as it is kept, its version (what a waiter compares without reading it), and
/// what wakes the calls that wait on it: made by the first of them, so a request nobody
/// waits on pays for none (a `watch` channel for each cost 1.2 KB, most of it wakers'
/// slots).
#[derive(Debug)]
struct Entry {
    kept: Kept,
    version: u64,
    changed: Option<Arc<Notify>>,
}

/// How a request is kept: as its JSON document, packed, until it is first read alone or
/// changed, then as a value.
///
/// A waiting call's request is most of what the process keeps for it, and packed text takes
/// a fifth of the room; but a request being reviewed is read and changed several times on
/// the way from the reviewer to the resumed call, where decoding it each time doubled that
/// latency. So what waits untouched is compact, and what is in hand is quick. Either is
/// shared (an `Arc`), so a reader takes it under the lock and reads it outside.
#[derive(Debug, Clone)]
enum Kept {
    Written(Packed),
    Value(Arc<ApprovalRequest>),
}

impl Kept {
    fn read(&self, id: RequestId) -> Result<ApprovalRequest, StoreError> {
        match self {
            Kept::Written(packed) => {
                let body = packed
                    .unpack()
                    .map_err(|e| StoreError::unreadable(BACKEND, format!("request {id}"), e))?;
                decode_request(BACKEND, id, &body)
            }
            Kept::Value(request) => Ok(ApprovalRequest::clone(request)),
        }
    }
}

/// Requests by the call they were made for (its requester's id and its action's digest),
/// oldest first, for re-attachment.
///
/// Keyed by a hash of the two, not the two (56 bytes, the id a string), and one request
/// kept without a vector (whose first growth takes room for four): nearly every call has
/// made one request, and this index has an entry for every request ever made. Requests
/// whose calls share a hash share an entry; the caller compares each candidate's call
/// ([`tally::attachable`]) before it attaches, so that costs a read, never a wrong match.
#[derive(Debug, Default)]
struct ByCall {
    hasher: RandomState,
    calls: HashMap<u64, Made>,
}

/// The requests one call (or calls sharing a hash) made, oldest first.
#[derive(Debug)]
enum Made {
    One(RequestId),
    Many(Vec<RequestId>),
}

impl ByCall {
    fn key(&self, requester: &str, digest: &Digest) -> u64 {
        self.hasher.hash_one((requester, digest))
    }

    /// The requests made for the call hashed as `key`, oldest first.
    fn made(&self, key: u64) -> Option<&[RequestId]> {
        Some(match self.calls.get(&key)? {
            Made::One(id) => std::slice::from_ref(id),
            Made::Many(ids) => ids,
        })
    }

    fn add(&mut self, key: u64, id: RequestId) {
        match self.calls.entry(key) {
            hash_map::Entry::Vacant(e) => {
                e.insert(Made::One(id));
            }
            hash_map::Entry::Occupied(mut e) => {
                let made = e.get_mut();
                match made {
                    Made::One(first) => *made = Made::Many(vec![*first, id]),
                    Made::Many(ids) => ids.push(id),
                }
            }
        }
    }
}

impl State {
    /// What is kept of request `id`, and its version.
    fn kept(&self, id: RequestId) -> Result<(Kept, u64), StoreError> {
        let entry = self
            .requests
            .get(&id)
            .ok_or(StoreError::UnknownRequest(id))?;
        Ok((entry.kept.clone(), entry.version))
    }

    /// Keeps `request` (new or changed) as `kept`, and whether it is open.
    fn put(&mut self, request: &ApprovalRequest, kept: Kept) -> &mut Entry {
        if request.is_pending() {
            self.open.insert(request.id, request.next_due());
        } else {
            self.open.remove(&request.id);
        }
        let entry = self.requests.entry(request.id).or_insert_with(|| Entry {
            kept: kept.clone(),
            version: 0,
            changed: None,
        });
        entry.kept = kept;
        entry.version = request.version;
        entry
    }
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
        // Written before locking; wasted only when the call attaches to a request.
        let body = Kept::Written(self.packer.pack(&encode_request(BACKEND, &request)?));
        let mut state = self.lock();
        let key = state
            .by_call
            .key(&request.context.requester.id, &request.action.digest);
        if let Some(ids) = state.by_call.made(key) {
            // Newest first: the latest attachable request wins.
            let candidates = ids
                .iter()
                .rev()
                .filter_map(|id| Some(state.requests.get(id)?.kept.read(*id)));
            // An unreadable candidate is skipped (and logged), as in the SQL stores.
            for existing in readable(candidates) {
                if tally::attachable(&existing, &request) {
                    return Ok(Attach {
                        request: existing,
                        created: false,
                    });
                }
            }
        }
        state.put(&request, body);
        state.by_call.add(key, request.id);
        Ok(Attach {
            request,
            created: true,
        })
    }

    async fn get(&self, id: RequestId) -> Result<Option<ApprovalRequest>, StoreError> {
        let Some((kept, version)) = self
            .lock()
            .requests
            .get(&id)
            .map(|e| (e.kept.clone(), e.version))
        else {
            return Ok(None);
        };
        let request = kept.read(id)?;
        if let Kept::Written(_) = kept {
            // Read one by one, it is in hand (a review, a lookup): the changes that follow
            // then start from the value.
            let value = Kept::Value(Arc::new(request.clone()));
            if let Some(entry) = self.lock().requests.get_mut(&id) {
                if entry.version == version {
                    entry.kept = value;
                }
            }
        }
        Ok(Some(request))
    }

    async fn update(
        &self,
        id: RequestId,
        change: Change<'_>,
    ) -> Result<ApprovalRequest, StoreError> {
        loop {
            let (kept, version) = self.lock().kept(id)?;
            let mut request = kept.read(id)?;
            change(&mut request);
            if request.version == version {
                return Ok(request);
            }
            let kept = Kept::Value(Arc::new(request.clone()));
            let mut state = self.lock();
            if state.requests.get(&id).map(|e| e.version) != Some(version) {
                // Changed since it was read: made again on what is there now, as a SQL
                // store's transaction is retried.
                continue;
            }
            let entry = state.put(&request, kept);
            if let Some(changed) = &entry.changed {
                changed.notify_waiters();
            }
            return Ok(request);
        }
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
            let (kept, version) = self.lock().kept(id)?;
            if version > seen_version {
                return kept.read(id);
            }
            notified.await;
        }
    }

    async fn list_open(&self) -> Result<Vec<ApprovalRequest>, StoreError> {
        let open: Vec<_> = {
            let state = self.lock();
            state
                .open
                .keys()
                .filter_map(|id| Some((*id, state.requests.get(id)?.kept.clone())))
                .collect()
        };
        Ok(readable(open.into_iter().map(|(id, k)| k.read(id))))
    }

    async fn list_decided(&self, limit: usize) -> Result<Vec<ApprovalRequest>, StoreError> {
        let decided: Vec<_> = {
            let state = self.lock();
            state
                .requests
                .iter()
                .rev()
                .filter(|(id, _)| !state.open.contains_key(id))
                .take(limit)
                .map(|(id, e)| (*id, e.kept.clone()))
                .collect()
        };
        Ok(readable(decided.into_iter().map(|(id, k)| k.read(id))))
    }

    async fn due(&self, now: Timestamp) -> Result<Vec<RequestId>, StoreError> {
        // Only a pending request has something due.
        Ok(self
            .lock()
            .open
            .iter()
            .filter(|(_, due)| due.is_some_and(|t| t <= now))
            .map(|(id, _)| *id)
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
