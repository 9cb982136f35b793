//! The audit log in a database: one gap-free ordered log however many processes append.
//!
//! Each append joins a batch; one writer task per sink commits a batch in one transaction
//! that numbers the records after the head it last wrote, extends the Merkle frontier, and
//! signs a checkpoint when one is due, writing only if the log's last record is still the
//! one it built on. The frontier is kept in the records' rows: the last record's on SQLite,
//! every [`FRONTIER_EVERY`]th record's on Postgres. Batching is the group commit: while one
//! transaction commits, the appends that arrive queue up and go in the next, so one sync
//! serves them all. Several processes (or sinks) take turns (SQLite's write lock, a
//! Postgres advisory lock) and a record's `seq` is its key, so sequence numbers never
//! repeat or skip.

use std::sync::Arc;
use std::time::Duration;

use approvals_core::log::LogHead;
use approvals_core::merkle::{Frontier, Hash};
use approvals_core::{AuditError, AuditEvent, AuditReceipt, AuditSink};
use approvals_core::{Clock, SystemClock};
use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot};

use super::DbError;

/// How a [`SqlAudit`] names, signs and checkpoints its log: the options every sink takes.
/// Keep the signer's key outside the database: whoever can write the database must not be
/// able to re-sign a rewritten log.
pub use approvals_core::log::LogOptions as SqlAuditOptions;

/// The most records one transaction commits.
const MAX_BATCH: usize = 512;

/// The head of the log: its frontier, last leaf and last checkpoint.
pub(crate) type Head = LogHead;

/// One record as stored.
#[derive(Debug)]
pub(crate) struct Row {
    pub(crate) seq: i64,
    pub(crate) leaf: Vec<u8>,
    pub(crate) record: String,
    /// The log's Merkle frontier after this record, for every [`FRONTIER_EVERY`]th record
    /// (`None` for the others). Postgres keeps these; SQLite keeps the frontier of each
    /// batch's last record instead ([`Batch::head`]).
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))] // read by Postgres only
    pub(crate) frontier: Option<Vec<u8>>,
}

/// Postgres keeps the log's frontier in the row of every record whose `seq + 1` is a
/// multiple of this, so the log's last `FRONTIER_EVERY` records always include one that
/// holds a frontier (or the log's first record), and the head is that frontier with the
/// leaves after it pushed on. Every row holding one would add about 300 bytes to each
/// record; one in 32, ten.
pub(crate) const FRONTIER_EVERY: i64 = 32;

impl Row {
    /// Numbers `event` after `head`, moves the head past it, and keeps the frontier after
    /// it if its `seq` is one that holds it.
    pub(crate) fn append(head: &mut Head, event: AuditEvent) -> Result<Self, DbError> {
        let a = head.append(event);
        let seq = i64::try_from(a.seq)?;
        let frontier = ((seq + 1) % FRONTIER_EVERY == 0).then(|| head.tree().to_bytes());
        Ok(Row {
            seq,
            leaf: a.leaf.to_vec(),
            record: a.line,
            frontier,
        })
    }
}

/// What one transaction writes: the new records, the new head, and a checkpoint if due.
#[derive(Debug)]
pub(crate) struct Batch {
    pub(crate) rows: Vec<Row>,
    pub(crate) head: Head,
    /// `(size, signed note)`.
    pub(crate) checkpoint: Option<(i64, String)>,
}

impl Batch {
    /// Whether the transaction has nothing to write.
    pub(crate) fn is_empty(&self) -> bool {
        self.rows.is_empty() && self.checkpoint.is_none()
    }
}

/// The batch that appends `events` after `head`, with a checkpoint if one is due (or
/// `force`d) at `now` (unix microseconds).
fn extend(
    mut head: Head,
    events: &[AuditEvent],
    options: &SqlAuditOptions,
    now: i64,
    force: bool,
) -> Result<Batch, DbError> {
    let mut rows = Vec::with_capacity(events.len());
    for event in events.iter().cloned() {
        rows.push(Row::append(&mut head, event)?);
    }
    let checkpoint = match head
        .checkpoint(options, now, force)
        .map_err(DbError::failed)?
    {
        Some(c) => Some((i64::try_from(c.size)?, c.note)),
        None => None,
    };
    Ok(Batch {
        rows,
        head,
        checkpoint,
    })
}

/// A database that can hold the log.
///
/// The writer keeps the head it last wrote and builds the next batch on it without reading
/// the database first; [`AuditBackend::write_if`] writes only if the stored head is still
/// that one (no other writer, in this process or another, got in between), atomically with
/// the records. When it has moved, the writer reads it and builds the batch again.
#[async_trait]
pub(crate) trait AuditBackend: Send + Sync + 'static {
    /// `sqlite` or `postgres`, with the database's name, for errors.
    fn describe(&self) -> String;

    /// The head as stored now.
    async fn read_head(&self) -> Result<Head, DbError>;

    /// The latest signed checkpoint note, if any.
    async fn latest_checkpoint(&self) -> Result<Option<String>, DbError>;

    /// In one transaction: if the stored head's frontier and signed size are still
    /// `expected`'s (a checkpoint-only batch moves only the latter), writes the
    /// batch's records, its new head and its checkpoint, and returns `true`; otherwise
    /// writes nothing and returns `false`.
    async fn write_if(&self, expected: &Head, batch: &Batch) -> Result<bool, DbError>;

    /// Holding the log's head (no writer of this process can move it meanwhile, and on
    /// Postgres none at all): reads the head, builds the batch on it with `build`, and
    /// writes it unless it is empty. What a writer does once its [`AuditBackend::write_if`]
    /// found the head moved: a batch built on a head read outside the hold can lose every
    /// race to the store's changes that commit their records with them.
    ///
    /// Fails outright (`Err`) if nothing was written; else returns the batch and how its
    /// write ended (a lost connection leaves that unknown).
    async fn write_locked(&self, build: Build<'_>)
    -> Result<(Batch, Result<(), DbError>), DbError>;
}

/// Builds a batch on the head it is given (see [`AuditBackend::write_locked`]).
pub(crate) type Build<'a> = &'a mut (dyn FnMut(Head) -> Result<Batch, DbError> + Send);

/// How often a batch is rebuilt on a moved head before the append fails (closed): only
/// reached if other writers win every race this long.
pub(crate) const MAX_ATTEMPTS: usize = 1000;

// Events are moved through the channel whole; boxing each would cost an allocation per
// append for a size difference that does not matter in a queue.
#[allow(clippy::large_enum_variant)]
enum Message {
    Append(AuditEvent, oneshot::Sender<Result<u64, DbError>>),
    Flush(oneshot::Sender<Result<(), DbError>>),
}

/// An [`AuditSink`] kept in an SQLite or Postgres database beside the requests, with signed
/// checkpoints. Get one from [`crate::sqlite::Sqlite::audit`] or
/// [`crate::postgres::Postgres::audit`]; clones share one writer.
#[derive(Clone)]
pub struct SqlAudit {
    tx: mpsc::Sender<Message>,
    shared: Arc<Shared>,
    name: Arc<str>,
    /// The log's name its database's store answers too (see `AuditSink::log_id`).
    log_id: Arc<str>,
}

impl std::fmt::Debug for SqlAudit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlAudit")
            .field("database", &self.name)
            .finish_non_exhaustive()
    }
}

/// What the writer task and a lone appender share.
struct Shared {
    backend: Arc<dyn AuditBackend>,
    options: SqlAuditOptions,
    /// The head this sink last wrote (`None`: read it from the database first). Whoever
    /// writes holds it, so this sink's writes go one at a time.
    head: tokio::sync::Mutex<Option<Head>>,
}

impl SqlAudit {
    /// Starts the writer task on the current tokio runtime.
    pub(crate) fn start(
        backend: Arc<dyn AuditBackend>,
        options: SqlAuditOptions,
        log_id: &str,
    ) -> Self {
        let name: Arc<str> = backend.describe().into();
        let (tx, rx) = mpsc::channel(MAX_BATCH * 4);
        let shared = Arc::new(Shared {
            backend,
            options,
            head: tokio::sync::Mutex::new(None),
        });
        tokio::spawn(write_loop(shared.clone(), rx));
        Self {
            tx,
            shared,
            name,
            log_id: log_id.into(),
        }
    }

    fn error(&self, message: impl Into<String>) -> AuditError {
        AuditError::new(self.name.to_string(), message)
    }

    /// The writer's failure as the sink's error, its cause (the driver's error) kept.
    fn failed(&self, e: DbError) -> AuditError {
        let mut error = self.error(e.to_string());
        error.source = Some(e.cause().clone());
        error
    }

    /// Signs a checkpoint of everything appended so far, unless the latest one covers it.
    pub async fn checkpoint(&self) -> Result<(), AuditError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Message::Flush(reply))
            .await
            .map_err(|_| self.error("the audit writer has stopped"))?;
        answer
            .await
            .map_err(|_| self.error("the audit writer has stopped"))?
            .map_err(|e| self.failed(e))
    }
}

#[async_trait]
impl AuditSink for SqlAudit {
    async fn append(&self, event: AuditEvent) -> Result<AuditReceipt, AuditError> {
        // While nobody else writes, an appender writes its record itself: handing it to the
        // writer task and the answer back took two task switches, a fifth of an append to
        // SQLite. Cancelled midway, it leaves no head behind to trust (`commit`), and the
        // writing connection closes if it was left in doubt. Appenders that find a write
        // under way queue for the writer task, which commits them together.
        if let Ok(mut head) = self.shared.head.try_lock() {
            let shared = &*self.shared;
            let seqs = commit(
                &*shared.backend,
                &shared.options,
                &mut head,
                std::slice::from_ref(&event),
                false,
            )
            .await
            .map_err(|e| self.failed(e))?;
            return match seqs.first() {
                Some(&seq) => Ok(AuditReceipt { seq }),
                None => Err(self.error("the record was not numbered")),
            };
        }
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Message::Append(event, reply))
            .await
            .map_err(|_| self.error("the audit writer has stopped"))?;
        let seq = answer
            .await
            .map_err(|_| self.error("the audit writer has stopped"))?
            .map_err(|e| self.failed(e))?;
        Ok(AuditReceipt { seq })
    }

    async fn flush(&self) -> Result<(), AuditError> {
        self.checkpoint().await
    }

    fn log_id(&self) -> Option<&str> {
        Some(&self.log_id)
    }
}

/// The writer: takes whatever has queued (up to `max_batch`), commits it in one
/// transaction, answers each appender; signs timed checkpoints between batches.
async fn write_loop(shared: Arc<Shared>, mut rx: mpsc::Receiver<Message>) {
    let (backend, options) = (&*shared.backend, &shared.options);
    let mut tick =
        tokio::time::interval(options.checkpoint_interval.max(Duration::from_millis(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let max = MAX_BATCH;
    loop {
        let first = tokio::select! {
            m = rx.recv() => match m {
                Some(m) => m,
                // Every sink handle is gone.
                None => return,
            },
            _ = tick.tick() => {
                let mut cached = shared.head.lock().await;
                if let Err(e) = commit(backend, options, &mut cached, &[], false).await {
                    tracing::error!(error = %e, "could not sign a timed audit checkpoint");
                }
                continue;
            }
        };
        // Whatever queued while a lone appender wrote joins this batch.
        let mut cached = shared.head.lock().await;
        let mut events = Vec::new();
        let mut appenders = Vec::new();
        let mut flushers = Vec::new();
        let mut next = Some(first);
        while let Some(m) = next.take() {
            match m {
                Message::Append(e, reply) => {
                    events.push(e);
                    appenders.push(reply);
                }
                Message::Flush(reply) => flushers.push(reply),
            }
            if appenders.len() < max {
                next = rx.try_recv().ok();
            }
        }
        let force = !flushers.is_empty();
        match commit(backend, options, &mut cached, &events, force).await {
            Ok(seqs) => {
                for (reply, seq) in appenders.into_iter().zip(seqs) {
                    let _ = reply.send(Ok(seq));
                }
                for reply in flushers {
                    let _ = reply.send(Ok(()));
                }
            }
            Err(e) => {
                // The transaction rolled back: none of these records exists, and each
                // appender's call fails closed. The next batch tries afresh, so the sink
                // recovers when the database does.
                for reply in appenders {
                    let _ = reply.send(Err(e.clone()));
                }
                for reply in flushers {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }
}

async fn commit(
    backend: &dyn AuditBackend,
    options: &SqlAuditOptions,
    cached: &mut Option<Head>,
    events: &[AuditEvent],
    force: bool,
) -> Result<Vec<u64>, DbError> {
    let now = SystemClock.now().unix_micros();
    // Whatever happens below, a head is only trusted again once a write confirms it.
    let mut head = match cached.take() {
        Some(h) => h,
        None => {
            // A log keeps one origin: a writer configured with another is refused before
            // it appends anything.
            let latest = backend.latest_checkpoint().await?;
            options
                .check_origin(latest.as_deref())
                .map_err(DbError::failed)?;
            read_head(backend).await?
        }
    };
    let mut lost = 0;
    // Optimistic first (one round trip on the head this writer last wrote); once that
    // found the head moved, under the hold.
    let mut hold = false;
    for _ in 0..MAX_ATTEMPTS {
        let (batch, written) = if hold {
            backend
                .write_locked(&mut |h| extend(h, events, options, now, force))
                .await?
        } else {
            let batch = extend(head.clone(), events, options, now, force)?;
            if batch.is_empty() {
                *cached = Some(head);
                return Ok(Vec::new());
            }
            match backend.write_if(&head, &batch).await {
                Ok(true) => (batch, Ok(())),
                // Another writer appended since: build on its head, holding it.
                Ok(false) => {
                    hold = true;
                    continue;
                }
                Err(e) => (batch, Err(e)),
            }
        };
        match written {
            Ok(()) => {
                let seqs = batch.rows.iter().map(|r| r.seq.unsigned_abs()).collect();
                *cached = Some(batch.head);
                return Ok(seqs);
            }
            Err(DbError::Lost(e)) if lost < super::RETRIES => {
                lost += 1;
                tracing::warn!(attempt = lost, error = %e, "the audit log's connection was lost; trying again on a new one");
                tokio::time::sleep(super::RETRY_PAUSE * (1 << (lost - 1))).await;
                // The write may have committed before the connection went: then the stored
                // head is the batch's own, and the records are in the log once already.
                let stored = read_head(backend).await?;
                if stored.same_point(&batch.head) {
                    let seqs = batch.rows.iter().map(|r| r.seq.unsigned_abs()).collect();
                    *cached = Some(batch.head);
                    return Ok(seqs);
                }
                head = stored;
            }
            Err(e) => return Err(e),
        }
    }
    Err(DbError::failed(format!(
        "gave up after {MAX_ATTEMPTS} attempts: other writers kept moving the log's head"
    )))
}

/// Reads the stored head, retrying a lost connection.
async fn read_head(backend: &dyn AuditBackend) -> Result<Head, DbError> {
    let mut lost = 0;
    loop {
        match backend.read_head().await {
            Ok(h) => return Ok(h),
            Err(DbError::Lost(e)) if lost < super::RETRIES => {
                lost += 1;
                tracing::warn!(attempt = lost, error = %e, "the audit log's connection was lost; trying again on a new one");
                tokio::time::sleep(super::RETRY_PAUSE * (1 << (lost - 1))).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Reads a head from its columns. A log that keeps its frontier in its last record's row
/// (SQLite) has none when it is empty (the empty tree's, then), and none when records
/// after the last that holds one were removed.
pub(crate) fn head_from(
    frontier: Option<&[u8]>,
    last_leaf: Option<Vec<u8>>,
    signed_size: i64,
    signed_at: i64,
) -> Result<Head, String> {
    let frontier = match (frontier, &last_leaf) {
        (Some(bytes), _) => {
            Frontier::from_bytes(bytes).ok_or("the audit head's Merkle frontier is malformed")?
        }
        (None, None) => Frontier::default(),
        (None, Some(_)) => return Err(format!("the log's last record {MISSING_FRONTIER}")),
    };
    let last_leaf = match last_leaf {
        None => None,
        Some(b) => Some(
            <Hash>::try_from(b.as_slice())
                .map_err(|_| "the audit head's last leaf is not 32 bytes")?,
        ),
    };
    LogHead::from_parts(
        frontier,
        last_leaf,
        u64::try_from(signed_size).map_err(|e| e.to_string())?,
        signed_at,
    )
    .map_err(|e| format!("the audit head is malformed: {e}"))
}

/// One of the log's last records as Postgres reads them for its head: `seq`, leaf hash,
/// and the frontier after it if its row keeps one (see [`FRONTIER_EVERY`]).
#[cfg_attr(not(feature = "postgres"), allow(dead_code))] // read by Postgres only
pub(crate) type Recent = (i64, Vec<u8>, Option<Vec<u8>>);

/// The head of a log that keeps its frontier in every [`FRONTIER_EVERY`]th record's row
/// (Postgres), from its last records (`recent`, newest first, at least that many unless
/// the log is shorter) and the latest checkpoint's size and time: the newest frontier kept
/// among them, with the leaves of the records after it pushed on (from the empty tree if
/// they run back to the log's first record). Refuses records that do not follow each
/// other and a frontier that does not end at its record.
#[cfg_attr(not(feature = "postgres"), allow(dead_code))] // read by Postgres only
pub(crate) fn head_from_recent(
    recent: &[Recent],
    signed_size: i64,
    signed_at: i64,
) -> Result<Head, String> {
    let leaf = |seq: i64, bytes: &[u8]| {
        <Hash>::try_from(bytes).map_err(|_| format!("record {seq}'s leaf hash is not 32 bytes"))
    };
    // The newest record that keeps a frontier: its place among `recent`, `seq`, frontier.
    let kept = recent
        .iter()
        .enumerate()
        .find_map(|(i, (seq, _, f))| Some((i, seq, f.as_deref()?)));
    let (mut tree, after) = match (kept, recent.last()) {
        (Some((i, seq, bytes)), _) => {
            let tree = Frontier::from_bytes(bytes)
                .ok_or_else(|| format!("record {seq}'s Merkle frontier is malformed"))?;
            if i64::try_from(tree.size()).ok() != seq.checked_add(1) {
                return Err(format!(
                    "record {seq}'s Merkle frontier counts {} records",
                    tree.size()
                ));
            }
            (tree, &recent[..i])
        }
        (None, None | Some((0, _, _))) => (Frontier::default(), recent),
        (None, Some((seq, _, _))) => {
            return Err(format!(
                "none of the last records, back to seq {seq}, holds the log's Merkle frontier: records were removed"
            ));
        }
    };
    for (seq, bytes, _) in after.iter().rev() {
        if u64::try_from(*seq).ok() != Some(tree.size()) {
            return Err(format!(
                "record {} is missing (the next is seq {seq})",
                tree.size()
            ));
        }
        tree.push(leaf(*seq, bytes)?);
    }
    let last_leaf = match recent.first() {
        Some((seq, bytes, _)) => Some(leaf(*seq, bytes)?),
        None => None,
    };
    LogHead::from_parts(
        tree,
        last_leaf,
        u64::try_from(signed_size).map_err(|e| e.to_string())?,
        signed_at,
    )
    .map_err(|e| format!("the audit head is malformed: {e}"))
}

/// Why a head whose last record holds no frontier is refused, said of that record.
pub(crate) const MISSING_FRONTIER: &str =
    "does not hold the log's Merkle frontier: records after it were removed";

/// Checks the head against the last stored record: the frontier's size is one past the last
/// sequence number and the last leaf is that record's.
pub(crate) fn check_head(head: &Head, last: Option<(i64, Vec<u8>)>) -> Result<(), String> {
    let size = head.size();
    match last {
        None if size == 0 => Ok(()),
        None => Err(format!(
            "the head counts {size} records but the log is empty"
        )),
        Some((seq, leaf)) => {
            if u64::try_from(seq).ok().and_then(|s| s.checked_add(1)) != Some(size) {
                return Err(format!(
                    "the head counts {size} records but the last record is seq {seq}"
                ));
            }
            if head.last_leaf().map(|l| l.to_vec()) != Some(leaf) {
                return Err(format!(
                    "record {seq}'s leaf hash differs from the one the head recorded"
                ));
            }
            Ok(())
        }
    }
}

/// An exported log from `(seq, record)` rows, refusing a gap.
pub(crate) fn exported(
    backend: &str,
    rows: Vec<(i64, String)>,
    checkpoints: Vec<String>,
) -> Result<super::ExportedLog, approvals_core::StoreError> {
    let mut records = Vec::with_capacity(rows.len());
    for (i, (seq, record)) in rows.into_iter().enumerate() {
        if usize::try_from(seq).ok() != Some(i) {
            return Err(approvals_core::StoreError::Invariant {
                backend: backend.to_owned(),
                message: format!(
                    "the audit log has a gap: record {i} is missing (next is seq {seq})"
                ),
            });
        }
        records.push(record);
    }
    Ok(super::ExportedLog {
        records,
        checkpoints,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use approvals_core::merkle::root;

    fn event(n: u64) -> AuditEvent {
        let action = approvals_core::Action::builder("f", "p")
            .arg("n", &n)
            .build()
            .unwrap();
        AuditEvent {
            at: approvals_core::Timestamp::from_unix_micros(1_700_000_000_000_000),
            request_id: None,
            action: approvals_core::audit::ActionRef::from(&action),
            actor: None,
            policy_version: "code".into(),
            kind: approvals_core::audit::EventKind::Allowed { rule: "r".into() },
        }
    }

    /// A log of `n` records as Postgres keeps them (what [`Row::append`] gives), oldest
    /// first, and their leaf hashes.
    fn stored(n: u64) -> (Vec<Recent>, Vec<Hash>) {
        let mut head = Head::default();
        let rows: Vec<Recent> = (0..n)
            .map(|i| {
                let r = Row::append(&mut head, event(i)).unwrap();
                (r.seq, r.leaf, r.frontier)
            })
            .collect();
        let leaves = rows
            .iter()
            .map(|(_, l, _)| <Hash>::try_from(l.as_slice()).unwrap())
            .collect();
        (rows, leaves)
    }

    /// The last `FRONTIER_EVERY` of `rows`, newest first, as `READ_HEAD` reads them.
    fn recent(rows: &[Recent]) -> Vec<Recent> {
        rows.iter()
            .rev()
            .take(FRONTIER_EVERY as usize)
            .cloned()
            .collect()
    }

    #[test]
    fn only_every_32nd_record_keeps_a_frontier() {
        let (rows, _) = stored(100);
        let keeping: Vec<i64> = rows
            .iter()
            .filter(|(_, _, f)| f.is_some())
            .map(|(s, _, _)| *s)
            .collect();
        assert_eq!(keeping, [31, 63, 95]);
    }

    /// At every size around the records that keep a frontier, the head read from the last
    /// records has the root of every leaf (computed by `merkle::root` over all of them,
    /// not from a frontier), the log's size and its last leaf.
    #[test]
    fn the_head_read_from_the_last_records_is_the_whole_log_s() {
        for n in 0..=130 {
            let (rows, leaves) = stored(n);
            let head = head_from_recent(&recent(&rows), 0, 0).unwrap();
            assert_eq!(head.size(), n);
            assert_eq!(head.tree().root(), root(&leaves), "size {n}");
            assert_eq!(head.last_leaf(), leaves.last().copied());
        }
    }

    #[test]
    fn a_record_missing_among_the_last_ones_is_refused() {
        let (rows, _) = stored(70);
        let mut recent = recent(&rows);
        recent.retain(|(seq, _, _)| *seq != 68);
        let e = head_from_recent(&recent, 0, 0).unwrap_err();
        assert_eq!(e, "record 68 is missing (the next is seq 69)");
    }

    #[test]
    fn last_records_without_a_frontier_are_refused_unless_they_start_the_log() {
        let (rows, _) = stored(40);
        let mut last = recent(&rows);
        for r in &mut last {
            r.2 = None;
        }
        let e = head_from_recent(&last, 0, 0).unwrap_err();
        assert!(
            e.starts_with("none of the last records, back to seq 8,"),
            "{e}"
        );
        // The first records of a log hold none and need none.
        let (rows, _) = stored(20);
        assert_eq!(head_from_recent(&recent(&rows), 0, 0).unwrap().size(), 20);
    }

    #[test]
    fn a_frontier_that_does_not_end_at_its_record_is_refused() {
        let (rows, _) = stored(70);
        let mut recent = recent(&rows);
        // Record 63's frontier, moved to record 64's row.
        let i63 = recent.iter().position(|r| r.0 == 63).unwrap();
        let f = recent[i63].2.take();
        recent[i63 - 1].2 = f;
        let e = head_from_recent(&recent, 0, 0).unwrap_err();
        assert_eq!(e, "record 64's Merkle frontier counts 64 records");
        recent[i63 - 1].2 = Some(vec![0; 7]);
        let e = head_from_recent(&recent, 0, 0).unwrap_err();
        assert_eq!(e, "record 64's Merkle frontier is malformed");
    }

    #[test]
    fn a_checkpoint_past_the_log_is_refused() {
        let (rows, _) = stored(5);
        assert!(head_from_recent(&recent(&rows), 5, 1).is_ok());
        let e = head_from_recent(&recent(&rows), 6, 1).unwrap_err();
        assert!(e.contains("checkpoint covers 6 records of 5"), "{e}");
    }
}
