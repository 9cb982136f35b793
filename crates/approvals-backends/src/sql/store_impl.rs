//! The [`Store`](approvals_core::store::Store) implementation both SQL backends share,
//! written once and expanded for each driver.
//!
//! A macro rather than generic code: sqlx's executor traits make a function generic over
//! the database need a where-clause per bound type and per lifetime, and the two expansions
//! differ only in their SQL text, their connection type and two hooks: what a new request
//! waits for before looking for an identical one (`lock_call`), and how a committed change
//! is announced to other processes (`announce`).

/// The SQL each backend's store runs, in its own dialect.
pub(crate) struct Queries {
    /// `id` → `body`.
    pub(crate) get: &'static str,
    /// `id` → `body`, holding the row for the transaction.
    pub(crate) get_locked: &'static str,
    /// `requester, digest` → `body` of attachable requests, newest first.
    pub(crate) attach_candidates: &'static str,
    /// The eight request columns, in [`super::RequestColumns`] order.
    pub(crate) insert_request: &'static str,
    /// The same, by id (the first parameter).
    pub(crate) update_request: &'static str,
    /// `body` of pending requests, oldest first.
    pub(crate) list_open: &'static str,
    /// `limit` → bodies of decided requests, newest first.
    pub(crate) list_decided: &'static str,
    /// `now` → ids of pending requests with something due.
    pub(crate) due: &'static str,
    /// `id, requester, policy, action, body`.
    pub(crate) insert_grant: &'static str,
    /// `requester, policy, action` → `body`, oldest first.
    pub(crate) grants_for: &'static str,
    /// `id` → `body`, holding the row for the transaction.
    pub(crate) grant_locked: &'static str,
    /// `body, id`.
    pub(crate) update_grant: &'static str,
    /// every grant's `body`, oldest first.
    pub(crate) grants: &'static str,
}

/// Implements `Store` for `$store`, which has `begin()` (a transaction that holds the write
/// lock where the database needs one), `inner.pool`, `inner.watchers`, and the hooks
/// `lock_call(&self, conn, requester, digest)` and `announce(&self, conn, id)`.
macro_rules! sql_store {
    ($store:ty, $conn:ty, $backend:expr, $queries:expr) => {
        impl $store {
            /// Reads the whole audit log and its checkpoints, checking that sequence
            /// numbers run from 0 without gaps.
            pub async fn export_audit(&self) -> Result<$crate::sql::ExportedLog, StoreError> {
                let err = |e: sqlx::Error| store_error($backend, e);
                let records: Vec<(i64, String)> =
                    sqlx::query_as("SELECT seq, record FROM approvals_audit ORDER BY seq")
                        .fetch_all(&self.inner.pool)
                        .await
                        .map_err(err)?;
                let checkpoints: Vec<String> =
                    sqlx::query_scalar("SELECT note FROM approvals_checkpoints ORDER BY size")
                        .fetch_all(&self.inner.pool)
                        .await
                        .map_err(err)?;
                $crate::sql::exported($backend, records, checkpoints)
            }

            /// Checks that the log's head matches its last record before a sink appends.
            async fn check_audit_head(&self, database: &str) -> Result<(), $crate::sql::OpenError> {
                let fail = |e: sqlx::Error| $crate::sql::OpenError::Connect {
                    database: database.to_owned(),
                    message: e.to_string(),
                };
                let head: (Vec<u8>, Option<Vec<u8>>, i64, i64) = sqlx::query_as(
                    "SELECT frontier, last_leaf, signed_size, signed_at FROM approvals_audit_head WHERE id = 1",
                )
                .fetch_one(&self.inner.pool)
                .await
                .map_err(fail)?;
                let last: Option<(i64, Vec<u8>)> = sqlx::query_as(
                    "SELECT seq, leaf FROM approvals_audit ORDER BY seq DESC LIMIT 1",
                )
                .fetch_optional(&self.inner.pool)
                .await
                .map_err(fail)?;
                let audit_error = |what: String| $crate::sql::OpenError::Audit {
                    database: database.to_owned(),
                    what,
                };
                let head = $crate::sql::head_from(&head.0, head.1, head.2, head.3)
                    .map_err(audit_error)?;
                $crate::sql::check_head(&head, last).map_err(audit_error)
            }

            async fn write_request(
                conn: &mut $conn,
                r: &ApprovalRequest,
                insert: bool,
            ) -> Result<(), StoreError> {
                let c = $crate::sql::RequestColumns::of($backend, r)?;
                let sql = if insert {
                    $queries.insert_request
                } else {
                    $queries.update_request
                };
                sqlx::query(sql)
                    .bind(c.id)
                    .bind(c.requester)
                    .bind(c.digest)
                    .bind(c.attachable)
                    .bind(c.pending)
                    .bind(c.next_due)
                    .bind(c.version)
                    .bind(c.body)
                    .execute(conn)
                    .await
                    .map_err(|e| store_error($backend, e))?;
                Ok(())
            }

            async fn attach_in(
                &self,
                conn: &mut $conn,
                request: ApprovalRequest,
            ) -> Result<(Attach, bool), StoreError> {
                let requester = &request.context.requester.id;
                let digest = request.action.digest.to_string();
                self.lock_call(&mut *conn, requester, &digest).await?;
                let candidates: Vec<String> = sqlx::query_scalar($queries.attach_candidates)
                    .bind(requester)
                    .bind(&digest)
                    .fetch_all(&mut *conn)
                    .await
                    .map_err(|e| store_error($backend, e))?;
                for body in candidates {
                    let existing = decode_request($backend, &body)?;
                    if tally::attachable(
                        &existing,
                        &request.context.requester,
                        &request.action.digest,
                    ) {
                        let attach = Attach {
                            request: existing,
                            created: false,
                        };
                        return Ok((attach, false));
                    }
                }
                Self::write_request(conn, &request, true).await?;
                let attach = Attach {
                    request,
                    created: true,
                };
                Ok((attach, true))
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
                let mut request = decode_request($backend, &body)?;
                let before = request.version;
                change(&mut request);
                let changed = request.version != before;
                if changed {
                    Self::write_request(&mut *conn, &request, false).await?;
                    self.announce(conn, id).await?;
                }
                Ok((request, changed))
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
                let mut grant = decode_grant($backend, &body)?;
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
        }

        #[async_trait]
        impl Store for $store {
            async fn create_or_attach(
                &self,
                request: ApprovalRequest,
            ) -> Result<Attach, StoreError> {
                let mut tx = self.begin().await?;
                let outcome = self.attach_in(&mut tx, request).await;
                settle(tx, outcome, |e| store_error($backend, e)).await
            }

            async fn get(&self, id: RequestId) -> Result<Option<ApprovalRequest>, StoreError> {
                let body: Option<String> = sqlx::query_scalar($queries.get)
                    .bind(id.to_string())
                    .fetch_optional(&self.inner.pool)
                    .await
                    .map_err(|e| store_error($backend, e))?;
                body.map(|b| decode_request($backend, &b)).transpose()
            }

            async fn update(
                &self,
                id: RequestId,
                change: Change<'_>,
            ) -> Result<ApprovalRequest, StoreError> {
                let mut tx = self.begin().await?;
                let outcome = self.update_in(&mut tx, id, change).await;
                let (request, changed) = settle(
                    tx,
                    outcome.map(|(r, changed)| ((r, changed), changed)),
                    |e| store_error($backend, e),
                )
                .await?;
                if changed {
                    self.inner.watchers.bump(id);
                }
                Ok(request)
            }

            async fn wait_for_change(
                &self,
                id: RequestId,
                seen_version: u64,
            ) -> Result<ApprovalRequest, StoreError> {
                // Subscribed before reading: a change committed in between still wakes us.
                let mut changed = self.inner.watchers.subscribe(id);
                let mut failures = 0u32;
                loop {
                    match self.get(id).await {
                        Ok(Some(request)) if request.version > seen_version => {
                            return Ok(request);
                        }
                        Ok(Some(_)) => failures = 0,
                        Ok(None) => return Err(StoreError::UnknownRequest(id)),
                        Err(e) => {
                            // A lost connection: re-read on the next wake-up or after a
                            // short pause, a few times, before failing the wait (closed).
                            failures += 1;
                            if failures > 5 {
                                return Err(e);
                            }
                            tracing::warn!(request = %id, error = %e, "re-reading a request after a database error");
                            let pause = std::time::Duration::from_millis(50 << failures);
                            tokio::select! {
                                _ = changed.changed() => {}
                                () = tokio::time::sleep(pause) => {}
                            }
                            continue;
                        }
                    }
                    changed
                        .changed()
                        .await
                        .map_err(|_| store_error($backend, "the store was dropped"))?;
                }
            }

            async fn list_open(&self) -> Result<Vec<ApprovalRequest>, StoreError> {
                let bodies: Vec<String> = sqlx::query_scalar($queries.list_open)
                    .fetch_all(&self.inner.pool)
                    .await
                    .map_err(|e| store_error($backend, e))?;
                bodies.iter().map(|b| decode_request($backend, b)).collect()
            }

            async fn list_decided(&self, limit: usize) -> Result<Vec<ApprovalRequest>, StoreError> {
                let limit = i64::try_from(limit).unwrap_or(i64::MAX);
                let bodies: Vec<String> = sqlx::query_scalar($queries.list_decided)
                    .bind(limit)
                    .fetch_all(&self.inner.pool)
                    .await
                    .map_err(|e| store_error($backend, e))?;
                bodies.iter().map(|b| decode_request($backend, b)).collect()
            }

            async fn due(&self, now: Timestamp) -> Result<Vec<RequestId>, StoreError> {
                let ids: Vec<String> = sqlx::query_scalar($queries.due)
                    .bind(now.unix_micros())
                    .fetch_all(&self.inner.pool)
                    .await
                    .map_err(|e| store_error($backend, e))?;
                ids.iter()
                    .map(|s| s.parse().map_err(|e| store_error($backend, e)))
                    .collect()
            }

            async fn insert_grant(&self, grant: Grant) -> Result<(), StoreError> {
                sqlx::query($queries.insert_grant)
                    .bind(grant.id.to_string())
                    .bind(&grant.requester.id)
                    .bind(&grant.policy)
                    .bind(&grant.action)
                    .bind(encode_grant($backend, &grant)?)
                    .execute(&self.inner.pool)
                    .await
                    .map_err(|e| store_error($backend, e))?;
                Ok(())
            }

            async fn grants_for(
                &self,
                requester: &str,
                policy: &str,
                action: &str,
            ) -> Result<Vec<Grant>, StoreError> {
                let bodies: Vec<String> = sqlx::query_scalar($queries.grants_for)
                    .bind(requester)
                    .bind(policy)
                    .bind(action)
                    .fetch_all(&self.inner.pool)
                    .await
                    .map_err(|e| store_error($backend, e))?;
                bodies.iter().map(|b| decode_grant($backend, b)).collect()
            }

            async fn update_grant(
                &self,
                id: GrantId,
                change: GrantChange<'_>,
            ) -> Result<Grant, StoreError> {
                let mut tx = self.begin().await?;
                let outcome = Self::update_grant_in(&mut tx, id, change).await;
                settle(tx, outcome, |e| store_error($backend, e)).await
            }

            async fn grants(&self) -> Result<Vec<Grant>, StoreError> {
                let bodies: Vec<String> = sqlx::query_scalar($queries.grants)
                    .fetch_all(&self.inner.pool)
                    .await
                    .map_err(|e| store_error($backend, e))?;
                bodies.iter().map(|b| decode_grant($backend, b)).collect()
            }
        }
    };
}

pub(crate) use sql_store;
