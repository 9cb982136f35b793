//! Where requests live while they wait.

use async_trait::async_trait;

use crate::audit::AuditEvent;
use crate::clock::Timestamp;
use crate::error::StoreError;
use crate::grant::{Grant, GrantId};
use crate::request::{ApprovalRequest, RequestId};

/// A change to one request, run by the store inside its own transaction.
///
/// The closure is one of core's rule functions (see [`crate::tally`]); it bumps
/// `request.version` when it changed something, and the store persists the request and wakes
/// its waiters exactly then.
pub type Change<'a> = &'a mut (dyn FnMut(&mut ApprovalRequest) + Send);

/// A change to one request that also says what to record of it: like [`Change`], and then
/// returns the audit records of the request as the change left it (none when there is
/// nothing to record). See [`Store::update_recorded`].
pub type RecordedChange<'a> = &'a mut (dyn FnMut(&mut ApprovalRequest) -> Vec<AuditEvent> + Send);

/// What to record of a request made or joined: the audit records of what
/// [`Store::create_or_attach`] answered. See [`Store::create_recorded`].
pub type RecordedAttach<'a> = &'a mut (dyn FnMut(&Attach) -> Vec<AuditEvent> + Send);

/// A change to one standing grant, run by the store inside its own transaction: one of
/// [`crate::grant::use_grant`] or [`crate::grant::revoke`]. Returns whether it changed the
/// grant (and so whether it must be persisted).
pub type GrantChange<'a> = &'a mut (dyn FnMut(&mut Grant) -> bool + Send);

/// Keeps approval requests and applies changes to them atomically.
///
/// A store holds no approval rules of its own: every state change goes through
/// [`Store::update`] with a closure from [`crate::tally`], and re-attachment is decided by
/// [`crate::tally::attachable`]. A store only has to make each call atomic, durable to its
/// own standard, and visible to [`Store::wait_for_change`] in every process that shares it.
#[async_trait]
pub trait Store: Send + Sync {
    /// Inserts `request`, unless an identical call (same requester and digest, and the rest
    /// of [`crate::tally::same_call`]) has a request that [`crate::tally::attachable`]
    /// accepts; then returns that one instead. Atomic: two identical calls racing get the
    /// same request.
    async fn create_or_attach(&self, request: ApprovalRequest) -> Result<Attach, StoreError>;

    /// The request with this id.
    async fn get(&self, id: RequestId) -> Result<Option<ApprovalRequest>, StoreError>;

    /// Runs `change` on the request inside one transaction and returns the request as it is
    /// afterwards. Persists and wakes waiters only if `version` moved.
    ///
    /// Fails with [`StoreError::UnknownRequest`] if there is no such request.
    async fn update(
        &self,
        id: RequestId,
        change: Change<'_>,
    ) -> Result<ApprovalRequest, StoreError>;

    /// Names the audit log this store keeps beside its requests, if it keeps one that
    /// [`Store::update_recorded`] appends to: equal to the [`AuditSink::log_id`] of the
    /// sink that writes the same log. `None`, the default, for a store that keeps no log.
    ///
    /// [`AuditSink::log_id`]: crate::audit::AuditSink::log_id
    fn log_id(&self) -> Option<&str> {
        None
    }

    /// Runs `change` as [`Store::update`] does and, in the same transaction, appends the
    /// records it returns to the log this store keeps ([`Store::log_id`]): a state change
    /// and its audit records commit together, in one commit, or neither does. Returns the
    /// request and the records' sequence numbers.
    ///
    /// Stores that keep no log refuse with [`StoreError::Unsupported`] (the default); the
    /// gate calls this only when its audit sink names the store's log.
    async fn update_recorded(
        &self,
        id: RequestId,
        change: RecordedChange<'_>,
    ) -> Result<(ApprovalRequest, Vec<u64>), StoreError> {
        let _ = (id, change);
        Err(StoreError::Unsupported {
            backend: std::any::type_name::<Self>().to_owned(),
            operation: "appending audit records with a change".into(),
        })
    }

    /// [`Store::create_or_attach`], appending the records `records` makes of its answer to
    /// the log this store keeps ([`Store::log_id`]) in the same transaction: a request is
    /// never made without its `requested` record. Returns the answer and the records'
    /// sequence numbers.
    ///
    /// Stores that keep no log refuse with [`StoreError::Unsupported`] (the default); the
    /// gate calls this only when its audit sink names the store's log.
    async fn create_recorded(
        &self,
        request: ApprovalRequest,
        records: RecordedAttach<'_>,
    ) -> Result<(Attach, Vec<u64>), StoreError> {
        let _ = (request, records);
        Err(StoreError::Unsupported {
            backend: std::any::type_name::<Self>().to_owned(),
            operation: "appending audit records with a new request".into(),
        })
    }

    /// Resolves with the request once its version is greater than `seen_version` (at once if
    /// it already is).
    async fn wait_for_change(
        &self,
        id: RequestId,
        seen_version: u64,
    ) -> Result<ApprovalRequest, StoreError>;

    /// Requests still pending, oldest first.
    async fn list_open(&self) -> Result<Vec<ApprovalRequest>, StoreError>;

    /// Up to `limit` decided requests (approved, denied, expired, cancelled), the most
    /// recently created first: the history a console shows. Stores that keep no history
    /// answer with an error, which is the default.
    async fn list_decided(&self, limit: usize) -> Result<Vec<ApprovalRequest>, StoreError> {
        let _ = limit;
        Err(StoreError::Unsupported {
            backend: "store".into(),
            operation: "listing decided requests".into(),
        })
    }

    /// Ids of pending requests with something due at or before `now` (an escalation, a
    /// reminder, or the expiry): those whose [`ApprovalRequest::next_due`] is `<= now`.
    async fn due(&self, now: Timestamp) -> Result<Vec<RequestId>, StoreError>;

    /// Takes a request whose stored row cannot be read ([`StoreError::Unreadable`]) out of
    /// the open list, the due list and re-attachment, keeping the row for an operator to
    /// inspect. The gate calls it once it has audited the row as unreadable, so one bad row
    /// never stops the due-work timer. Stores that cannot hold an unreadable row (memory)
    /// need do nothing, which is the default.
    async fn set_aside(&self, id: RequestId) -> Result<(), StoreError> {
        let _ = id;
        Ok(())
    }

    /// Stores a newly issued standing grant.
    async fn insert_grant(&self, grant: Grant) -> Result<(), StoreError>;

    /// Grants issued to `requester` for `action` under `policy`, in any state, oldest first.
    async fn grants_for(
        &self,
        requester: &str,
        policy: &str,
        action: &str,
    ) -> Result<Vec<Grant>, StoreError>;

    /// Runs `change` on the grant inside one transaction and returns it as it is afterwards.
    /// Fails with [`StoreError::UnknownGrant`] if there is no such grant.
    async fn update_grant(&self, id: GrantId, change: GrantChange<'_>)
    -> Result<Grant, StoreError>;

    /// Every grant, oldest first.
    async fn grants(&self) -> Result<Vec<Grant>, StoreError>;

    /// Keeps a signed-in reviewer's console session under `key`, replacing any there, so that
    /// every service sharing the store knows it. `key` is a digest of the session's cookie
    /// (see [`Session::key`]), never the cookie itself: whoever reads the store cannot sign in
    /// with what they read.
    async fn put_session(&self, key: &str, session: &Session) -> Result<(), StoreError> {
        let _ = (key, session);
        Err(self.no_sessions())
    }

    /// The session under `key` if it has not expired by `now`.
    async fn session(&self, key: &str, now: Timestamp) -> Result<Option<Session>, StoreError> {
        let _ = (key, now);
        Err(self.no_sessions())
    }

    /// Ends the session under `key` (signing out), and any that expired by `now`.
    async fn end_session(&self, key: &str, now: Timestamp) -> Result<(), StoreError> {
        let _ = (key, now);
        Err(self.no_sessions())
    }

    /// The refusal of a store that keeps no sessions.
    #[doc(hidden)]
    fn no_sessions(&self) -> StoreError {
        StoreError::Unsupported {
            backend: std::any::type_name::<Self>().to_owned(),
            operation: "keeping console sessions".into(),
        }
    }
}

/// A reviewer signed in to the console, as a store keeps it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Session {
    /// Who signed in.
    pub principal: crate::principal::Principal,
    /// The token every form of the session carries (CSRF).
    pub csrf: String,
    /// When it ends.
    pub expires_at: Timestamp,
}

impl Session {
    /// The key a session is kept under: the hex SHA-256 of its cookie value.
    ///
    /// ```
    /// let key = approvals_core::store::Session::key("abc");
    /// assert_eq!(key, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    /// ```
    pub fn key(cookie: &str) -> String {
        use sha2::Digest as _;
        hex::encode(sha2::Sha256::digest(cookie.as_bytes()))
    }
}

/// The result of [`Store::create_or_attach`].
#[derive(Debug, Clone)]
pub struct Attach {
    /// The request, new or existing.
    pub request: ApprovalRequest,
    /// Whether it was created by this call.
    pub created: bool,
}
