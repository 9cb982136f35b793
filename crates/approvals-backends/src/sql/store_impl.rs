//! The [`Store`](approvals_core::store::Store) implementation both SQL backends share,
//! written once and expanded for each driver.
//!
//! A macro rather than generic code: sqlx's executor traits make a function generic over
//! the database need a where-clause per bound type and per lifetime, and the two expansions
//! differ only in their SQL text, their connection type and two hooks: what a new request
//! waits for before looking for an identical one (`lock_call`), and how a committed change
//! is announced to other processes (`announce`).
//!
//! Every call that meets a lost connection before anything was committed is made again on a
//! new connection, a few times ([`super::RETRIES`]), so a database restart or failover is
//! ridden out; a failed `COMMIT` never is (its outcome is unknown), and fails closed.

/// The SQL each backend's store runs, in its own dialect.
pub(crate) struct Queries {
    /// `id` → `body`.
    pub(crate) get: &'static str,
    /// `id` → `body`, holding the row for the transaction.
    pub(crate) get_locked: &'static str,
    /// `requester, digest` → `id, body` of joinable requests, newest first.
    pub(crate) attach_candidates: &'static str,
    /// The eight request columns, in [`super::RequestColumns`] order.
    pub(crate) insert_request: &'static str,
    /// The same, by id (the first parameter).
    pub(crate) update_request: &'static str,
    /// `after, limit` → `id, body` of the first `limit` pending requests whose id sorts
    /// after `after`, oldest first: a page of the open list.
    pub(crate) list_open: &'static str,
    /// `limit` → `id, body` of decided requests, newest first.
    pub(crate) list_decided: &'static str,
    /// `now` → ids of pending requests with something due.
    pub(crate) due: &'static str,
    /// `id`: takes an unreadable request out of the open and due lists, keeping its row.
    pub(crate) set_aside: &'static str,
    /// `id, requester, policy, action, body`.
    pub(crate) insert_grant: &'static str,
    /// `requester, policy, action` → `id, body`, oldest first.
    pub(crate) grants_for: &'static str,
    /// `id` → `body`, holding the row for the transaction.
    pub(crate) grant_locked: &'static str,
    /// `body, id`.
    pub(crate) update_grant: &'static str,
    /// every grant's `id, body`, oldest first.
    pub(crate) grants: &'static str,
    /// `key, expires_at, body`: inserts or replaces a console session.
    pub(crate) put_session: &'static str,
    /// `key, now` → `body` of an unexpired session.
    pub(crate) session: &'static str,
    /// `key, now`: deletes the session and every expired one.
    pub(crate) end_session: &'static str,
}

/// Evaluates `$op` (an expression yielding `Result<_, StoreError>`, awaited inside) again
/// while it fails with a lost connection, a few times, pausing between.
macro_rules! retrying {
    ($op:expr) => {{
        let mut attempt = 0;
        loop {
            match $op {
                Err(e) if e.is_unavailable() => {
                    attempt += 1;
                    if !$crate::sql::pause_before_retry(attempt, &e).await {
                        break Err(e);
                    }
                }
                other => break other,
            }
        }
    }};
}

/// Runs `$body` (which uses the transaction `$tx` and yields `Result<(T, commit), _>`) in
/// a transaction of `$store`, settled explicitly.
macro_rules! in_transaction {
    ($store:expr, $backend:expr, $tx:ident => $body:expr) => {
        match $store.begin().await {
            Ok(mut $tx) => {
                let outcome = $body;
                settle(
                    $tx,
                    outcome,
                    |e| store_error($backend, e),
                    |e| $crate::sql::commit_error($backend, e),
                )
                .await
            }
            Err(e) => Err(e),
        }
    };
}

pub(crate) use {in_transaction, retrying};

/// Implements `Store` for `$store`, which has `begin()` (a transaction that holds the write
/// lock where the database needs one, ended by `settle`), `inner.pool` (for reads),
/// `write_one(query)` (runs a statement that writes outside a transaction), `inner.watchers`, `inner.log_id`
/// (the name its log's sinks share: see `Store::log_id`), `inner.log_options` (its sink's,
/// for signing checkpoints), and the hooks
/// `lock_call(&self, conn, requester, digest)`, `announce(&self, conn, id)` and
/// `recorded(&self, id, change)` (`Store::update_recorded`, returning whether the request
/// changed) and `created(&self, request, records)` (`Store::create_recorded`), each with
/// its records appended to the log in the same transaction, as the backend keeps the log.
macro_rules! sql_store {
    ($store:ty, $conn:ty, $backend:expr, $queries:expr) => {
        impl $store {
            /// Reads the whole audit log and its checkpoints, checking that sequence
            /// numbers run from 0 without gaps.
            pub async fn export_audit(&self) -> Result<$crate::sql::ExportedLog, StoreError> {
                let err = |e: sqlx::Error| store_error($backend, e);
                // The checkpoints first: records are only ever added, so every checkpoint
                // read covers records the next query reads. The other way round, one signed
                // between the two queries could cover records the export does not hold, and
                // the export would not verify.
                let checkpoints: Vec<String> =
                    sqlx::query_scalar("SELECT note FROM approvals_checkpoints ORDER BY size")
                        .fetch_all(&self.inner.pool)
                        .await
                        .map_err(err)?;
                let records: Vec<(i64, String)> =
                    sqlx::query_as("SELECT seq, record FROM approvals_audit ORDER BY seq")
                        .fetch_all(&self.inner.pool)
                        .await
                        .map_err(err)?;
                $crate::sql::exported($backend, records, checkpoints)
            }

            /// Refuses a sink whose origin is not the log's (a log keeps one for its life)
            /// before this handle's store signs a checkpoint with its options.
            async fn check_audit_origin(
                &self,
                database: &str,
                options: &$crate::sql::SqlAuditOptions,
            ) -> Result<(), $crate::sql::OpenError> {
                let latest: Option<String> = sqlx::query_scalar(
                    "SELECT note FROM approvals_checkpoints ORDER BY size DESC LIMIT 1",
                )
                .fetch_optional(&self.inner.pool)
                .await
                .map_err(|e| $crate::sql::OpenError::Connect {
                    database: database.to_owned(),
                    message: e.to_string(),
                })?;
                options
                    .check_origin(latest.as_deref())
                    .map_err(|e| $crate::sql::OpenError::Audit {
                        database: database.to_owned(),
                        what: e.to_string(),
                    })
            }

            async fn write_request(
                conn: &mut $conn,
                r: &ApprovalRequest,
                insert: bool,
            ) -> Result<(), StoreError> {
                let sql = if insert {
                    $queries.insert_request
                } else {
                    $queries.update_request
                };
                $crate::sql::RequestColumns::of($backend, r)?
                    .bind(sqlx::query(sql))
                    .execute(conn)
                    .await
                    .map_err(|e| store_error($backend, e))?;
                Ok(())
            }

            async fn attach_in(
                &self,
                conn: &mut $conn,
                request: &ApprovalRequest,
            ) -> Result<(Attach, bool), StoreError> {
                let requester = request.context.requester.id.as_str();
                let digest = request.action.digest.to_string();
                self.lock_call(&mut *conn, requester, &digest).await?;
                let candidates: Vec<(String, String)> =
                    sqlx::query_as($queries.attach_candidates)
                        .bind(requester)
                        .bind(&digest)
                        .fetch_all(&mut *conn)
                        .await
                        .map_err(|e| store_error($backend, e))?;
                let attach = $crate::sql::attach_to($backend, candidates, request);
                if attach.created {
                    Self::write_request(conn, request, true).await?;
                }
                let created = attach.created;
                Ok((attach, created))
            }

            /// Runs `change` on the locked request; returns it and whether it changed (and
            /// was written and announced).
            async fn update_in(
                &self,
                conn: &mut $conn,
                id: RequestId,
                change: Change<'_>,
            ) -> Result<(ApprovalRequest, bool), StoreError> {
                let body: Option<String> = sqlx::query_scalar($queries.get_locked)
                    .bind(id.to_string())
                    .fetch_optional(&mut *conn)
                    .await
                    .map_err(|e| store_error($backend, e))?;
                let body = body.ok_or(StoreError::UnknownRequest(id))?;
                let mut request = decode_request($backend, &id.to_string(), &body)?;
                let before = request.version;
                change(&mut request);
                let changed = request.version != before;
                if changed {
                    Self::write_request(&mut *conn, &request, false).await?;
                    self.announce(conn, id).await?;
                }
                Ok((request, changed))
            }

            /// Signs a checkpoint of `head` if one is due under the options of the sink made
            /// from this handle (none before there is one): `(size, note)`.
            fn checkpoint_due(
                &self,
                head: &mut $crate::sql::Head,
            ) -> Result<Option<(i64, String)>, StoreError> {
                use approvals_core::Clock as _;
                let options = self
                    .inner
                    .log_options
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone();
                let Some(options) = options else {
                    return Ok(None);
                };
                let now = approvals_core::SystemClock.now().unix_micros();
                let broken = |message: String| StoreError::Invariant {
                    backend: $backend.into(),
                    message,
                };
                match head.checkpoint(&options, now, false) {
                    Ok(Some(c)) => Ok(Some((
                        i64::try_from(c.size).map_err(|e| broken(e.to_string()))?,
                        c.note,
                    ))),
                    Ok(None) => Ok(None),
                    Err(e) => Err(broken(format!("could not sign a checkpoint: {e}"))),
                }
            }

            async fn update_grant_in(
                conn: &mut $conn,
                id: GrantId,
                change: GrantChange<'_>,
            ) -> Result<(Grant, bool), StoreError> {
                let err = |e: sqlx::Error| store_error($backend, e);
                let body: Option<String> = sqlx::query_scalar($queries.grant_locked)
                    .bind(id.to_string())
                    .fetch_optional(&mut *conn)
                    .await
                    .map_err(err)?;
                let body = body.ok_or(StoreError::UnknownGrant(id))?;
                let mut grant = decode_grant($backend, &id.to_string(), &body)?;
                let changed = change(&mut grant);
                if changed {
                    sqlx::query($queries.update_grant)
                        .bind(encode_grant($backend, &grant)?)
                        .bind(id.to_string())
                        .execute(&mut *conn)
                        .await
                        .map_err(err)?;
                }
                Ok((grant, changed))
            }

            /// Reads rows of `(id, body)` with `query`, binding `bind` if given, retrying a
            /// lost connection.
            async fn read_rows(
                &self,
                query: &'static str,
                bind: Option<i64>,
            ) -> Result<Vec<(String, String)>, StoreError> {
                $crate::sql::retrying!({
                    let mut q = sqlx::query_as(query);
                    if let Some(b) = bind {
                        q = q.bind(b);
                    }
                    q.fetch_all(&self.inner.pool)
                        .await
                        .map_err(|e| store_error($backend, e))
                })
            }
        }

        #[async_trait]
        impl Store for $store {
            async fn create_or_attach(
                &self,
                request: ApprovalRequest,
            ) -> Result<Attach, StoreError> {
                $crate::sql::retrying!($crate::sql::in_transaction!(self, $backend, tx =>
                    self.attach_in(&mut tx, &request).await))
            }

            async fn get(&self, id: RequestId) -> Result<Option<ApprovalRequest>, StoreError> {
                let body: Option<String> = $crate::sql::retrying!(
                    sqlx::query_scalar($queries.get)
                        .bind(id.to_string())
                        .fetch_optional(&self.inner.pool)
                        .await
                        .map_err(|e| store_error($backend, e))
                )?;
                body.map(|b| decode_request($backend, &id.to_string(), &b))
                    .transpose()
            }

            async fn update(
                &self,
                id: RequestId,
                change: Change<'_>,
            ) -> Result<ApprovalRequest, StoreError> {
                let (request, changed) = $crate::sql::retrying!($crate::sql::in_transaction!(self, $backend, tx =>
                    self.update_in(&mut tx, id, &mut *change)
                        .await
                        .map(|(r, changed)| ((r, changed), changed))))?;
                if changed {
                    self.inner.watchers.bump(id);
                }
                Ok(request)
            }

            fn log_id(&self) -> Option<&str> {
                Some(&self.inner.log_id)
            }

            async fn create_recorded(
                &self,
                request: ApprovalRequest,
                records: approvals_core::store::RecordedAttach<'_>,
            ) -> Result<(Attach, Vec<u64>), StoreError> {
                self.created(request, records).await
            }

            async fn update_recorded(
                &self,
                id: RequestId,
                change: approvals_core::store::RecordedChange<'_>,
            ) -> Result<(ApprovalRequest, Vec<u64>), StoreError> {
                let (request, changed, seqs) = self.recorded(id, change).await?;
                if changed {
                    self.inner.watchers.bump(id);
                }
                Ok((request, seqs))
            }

            async fn wait_for_change(
                &self,
                id: RequestId,
                seen_version: u64,
            ) -> Result<ApprovalRequest, StoreError> {
                let changed = self.inner.watchers.subscribe(id);
                let mut failures = 0u32;
                loop {
                    // Made before reading: a change committed in between still wakes us.
                    let notified = changed.notified();
                    // Nothing awaited inside the match: its arms would keep the row read
                    // (a whole request) in every waiting call's future while it waits.
                    let pause = match self.get(id).await {
                        Ok(Some(request)) if request.version > seen_version => {
                            return Ok(request);
                        }
                        Ok(Some(_)) => {
                            failures = 0;
                            None
                        }
                        Ok(None) => return Err(StoreError::UnknownRequest(id)),
                        Err(e) => {
                            // The database is away for longer than `get` retries: re-read
                            // on the next wake-up or after a pause, a few times more,
                            // before failing the wait (closed).
                            failures += 1;
                            if failures > 5 {
                                return Err(e);
                            }
                            tracing::warn!(request = %id, error = %e, "re-reading a request after a database error");
                            Some(std::time::Duration::from_millis(50 << failures))
                        }
                    };
                    match pause {
                        None => notified.await,
                        // Boxed: only a wait through an outage pays for a timer.
                        Some(pause) => {
                            tokio::select! {
                                () = notified => {}
                                () = Box::pin(tokio::time::sleep(pause)) => {}
                            }
                        }
                    }
                }
            }

            async fn list_open(&self) -> Result<Vec<ApprovalRequest>, StoreError> {
                // In pages, each after the last id of the one before. A page's LIMIT has the
                // planner read the open index in order whatever its statistics say. Asked
                // for every open row at once, Postgres planned a bitmap scan after a burst of
                // decisions (its statistics still counting those requests open), which
                // visited every decided request's row until a vacuum; an index scan visits
                // each such entry once and marks it dead for the scans after it. Each page is
                // its own statement: a request decided between two pages is left out if its
                // page had not been read, and one made meanwhile is listed if its id sorts
                // after the last page read, as a list taken a moment later would.
                let mut rows: Vec<(String, String)> = Vec::new();
                let mut after = String::new();
                loop {
                    let page: Vec<(String, String)> = $crate::sql::retrying!(
                        sqlx::query_as($queries.list_open)
                            .bind(&after)
                            .bind($crate::sql::OPEN_PAGE)
                            .fetch_all(&self.inner.pool)
                            .await
                            .map_err(|e| store_error($backend, e))
                    )?;
                    let more = page.len() as i64 == $crate::sql::OPEN_PAGE;
                    if let Some((id, _)) = page.last() {
                        after.clone_from(id);
                    }
                    rows.extend(page);
                    if !more {
                        break;
                    }
                }
                Ok($crate::sql::decode_rows($backend, rows))
            }

            async fn list_decided(&self, limit: usize) -> Result<Vec<ApprovalRequest>, StoreError> {
                let limit = i64::try_from(limit).unwrap_or(i64::MAX);
                let rows = self.read_rows($queries.list_decided, Some(limit)).await?;
                Ok($crate::sql::decode_rows($backend, rows))
            }

            async fn due(&self, now: Timestamp) -> Result<Vec<RequestId>, StoreError> {
                let ids: Vec<String> = $crate::sql::retrying!(
                    sqlx::query_scalar($queries.due)
                        .bind(now.unix_micros())
                        .fetch_all(&self.inner.pool)
                        .await
                        .map_err(|e| store_error($backend, e))
                )?;
                // An id column that does not parse is skipped like any unreadable row.
                Ok(ids
                    .iter()
                    .filter_map(|s| match s.parse() {
                        Ok(id) => Some(id),
                        Err(e) => {
                            tracing::error!(id = %s, error = %e, "skipping a stored request whose id cannot be read");
                            None
                        }
                    })
                    .collect())
            }

            async fn set_aside(&self, id: RequestId) -> Result<(), StoreError> {
                self.write_one(sqlx::query($queries.set_aside).bind(id.to_string()))
                    .await
                    .map_err(|e| store_error($backend, e))?;
                Ok(())
            }

            async fn insert_grant(&self, grant: Grant) -> Result<(), StoreError> {
                // One statement in its own transaction: if the connection is lost while it
                // runs, whether it took effect is unknown, so it is not made again.
                let insert = sqlx::query($queries.insert_grant)
                    .bind(grant.id.to_string())
                    .bind(grant.requester.id.as_str())
                    .bind(&grant.policy)
                    .bind(&grant.action)
                    .bind(encode_grant($backend, &grant)?);
                self.write_one(insert)
                    .await
                    .map_err(|e| StoreError::backend($backend, e))?;
                Ok(())
            }

            async fn grants_for(
                &self,
                requester: &str,
                policy: &str,
                action: &str,
            ) -> Result<Vec<Grant>, StoreError> {
                let rows: Vec<(String, String)> = $crate::sql::retrying!(
                    sqlx::query_as($queries.grants_for)
                        .bind(requester)
                        .bind(policy)
                        .bind(action)
                        .fetch_all(&self.inner.pool)
                        .await
                        .map_err(|e| store_error($backend, e))
                )?;
                // A grant that cannot be read is never used.
                Ok(decode_grants(rows))
            }

            async fn update_grant(
                &self,
                id: GrantId,
                change: GrantChange<'_>,
            ) -> Result<Grant, StoreError> {
                $crate::sql::retrying!($crate::sql::in_transaction!(self, $backend, tx =>
                    Self::update_grant_in(&mut tx, id, &mut *change).await))
            }

            async fn grants(&self) -> Result<Vec<Grant>, StoreError> {
                let rows = self.read_rows($queries.grants, None).await?;
                Ok(decode_grants(rows))
            }

            async fn put_session(
                &self,
                key: &str,
                session: &approvals_core::store::Session,
            ) -> Result<(), StoreError> {
                let body = serde_json::to_string(session)
                    .map_err(|e| StoreError::backend($backend, e))?;
                $crate::sql::retrying!(
                    self.write_one(
                        sqlx::query($queries.put_session)
                            .bind(key)
                            .bind(session.expires_at.unix_micros())
                            .bind(&body),
                    )
                    .await
                    .map_err(|e| store_error($backend, e))
                )
            }

            async fn session(
                &self,
                key: &str,
                now: Timestamp,
            ) -> Result<Option<approvals_core::store::Session>, StoreError> {
                let body: Option<String> = $crate::sql::retrying!(
                    sqlx::query_scalar($queries.session)
                        .bind(key)
                        .bind(now.unix_micros())
                        .fetch_optional(&self.inner.pool)
                        .await
                        .map_err(|e| store_error($backend, e))
                )?;
                body.map(|b| {
                    serde_json::from_str(&b)
                        .map_err(|e| StoreError::unreadable($backend, "a console session", e))
                })
                .transpose()
            }

            async fn end_session(&self, key: &str, now: Timestamp) -> Result<(), StoreError> {
                $crate::sql::retrying!(
                    self.write_one(
                        sqlx::query($queries.end_session)
                            .bind(key)
                            .bind(now.unix_micros()),
                    )
                    .await
                    .map_err(|e| store_error($backend, e))
                )
            }
        }

        /// Decodes grants read in bulk, skipping (and logging) any that cannot be read.
        fn decode_grants(rows: Vec<(String, String)>) -> Vec<Grant> {
            rows.into_iter()
                .filter_map(|(id, body)| match decode_grant($backend, &id, &body) {
                    Ok(g) => Some(g),
                    Err(e) => {
                        tracing::error!(error = %e, "skipping a stored grant that cannot be read");
                        None
                    }
                })
                .collect()
        }
    };
}

pub(crate) use sql_store;
