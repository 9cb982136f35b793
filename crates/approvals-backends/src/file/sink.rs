//! The JSONL sink itself.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use approvals_core::log::LogHead;
use approvals_core::{AuditError, AuditEvent, AuditReceipt, AuditSink, Clock as _, SystemClock};
use async_trait::async_trait;
use tokio::sync::watch;

use super::checkpoints_path;

/// When appended records reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// `fdatasync` after every record, before `append` returns.
    #[default]
    EveryRecord,
    /// Group commit: appends return once a shared `fdatasync` covers them. The first waiter
    /// waits up to `max_delay` for others to join, then syncs for all of them.
    Group {
        /// The longest an append waits for company before syncing.
        max_delay: Duration,
    },
}

/// How a [`FileAudit`] names, signs and checkpoints its log: the options every sink takes.
pub use approvals_core::log::LogOptions as FileAuditOptions;

/// The log could not be opened or written.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum FileAuditError {
    /// An I/O error.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: Arc<std::io::Error>,
    },
    /// The existing log does not verify (including a torn last line after a crash), or its
    /// checkpoints name another origin; it is not appended to until an operator has looked
    /// at it.
    #[error("{path}: {what}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the sequence number.
        what: String,
    },
    /// A private key file that others may read or write; it is not used.
    #[error(
        "{path}: the private key file can be read or written by others (mode {mode:04o}); keep it private with `chmod 600 {path}`"
    )]
    Unprotected {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
}

/// Two errors are the same when they name the same file and say the same thing.
impl PartialEq for FileAuditError {
    fn eq(&self, other: &Self) -> bool {
        self.to_string() == other.to_string()
    }
}

impl Eq for FileAuditError {}

impl FileAuditError {
    pub(super) fn io(path: &Path, e: std::io::Error) -> Self {
        FileAuditError::Io {
            path: path.to_owned(),
            source: Arc::new(e),
        }
    }
}

struct State {
    file: File,
    checkpoints: File,
    /// Numbers, chains and hashes records, and signs checkpoints.
    head: LogHead,
    /// Set when a write failed midway: nothing more is appended (fail closed).
    broken: Option<String>,
}

/// An append-only JSONL [`AuditSink`] with signed checkpoints beside it.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use approvals_backends::file::{FileAudit, FileAuditOptions, write_new_signer};
/// let signer = write_new_signer("audit.key".as_ref(), "audit.example.com")?;
/// let audit = FileAudit::open("audit.jsonl", FileAuditOptions::new("audit.example.com/approvals", signer))?;
/// // Or with a group commit: appends that arrive together share one fdatasync.
/// # let signer = write_new_signer("audit2.key".as_ref(), "audit.example.com")?;
/// use approvals_backends::file::Durability;
/// let grouped = FileAudit::open_with(
///     "audit2.jsonl",
///     FileAuditOptions::new("audit.example.com/approvals", signer),
///     Durability::Group { max_delay: std::time::Duration::from_millis(2) },
/// )?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct FileAudit {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    options: FileAuditOptions,
    durability: Durability,
    state: Mutex<State>,
    /// Records `< synced` are on disk.
    synced: watch::Sender<u64>,
    /// Records `< signed` are covered by a signed checkpoint.
    signed: watch::Sender<u64>,
    /// Taken in turn by group-commit appenders; the holder syncs for everyone queued.
    leader: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for FileAudit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileAudit")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

impl FileAudit {
    /// Opens (or creates) the log at `path`, syncing every record before `append` returns.
    /// An existing log is verified first: a torn last line, a broken chain, a malformed
    /// record or checkpoints under another origin is an error naming what is wrong, and the
    /// file is left untouched.
    pub fn open(path: impl AsRef<Path>, options: FileAuditOptions) -> Result<Self, FileAuditError> {
        Self::open_with(path, options, Durability::EveryRecord)
    }

    /// [`FileAudit::open`], with records reaching the disk as `durability` says.
    pub fn open_with(
        path: impl AsRef<Path>,
        options: FileAuditOptions,
        durability: Durability,
    ) -> Result<Self, FileAuditError> {
        let path = path.as_ref().to_owned();
        let existing = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(FileAuditError::io(&path, e)),
        };
        // The whole existing log is checked against its checkpoints before anything is
        // appended to it; records not yet signed (a crash before the first checkpoint) pass.
        let signed = super::read_checkpoints(&path)?;
        let report =
            approvals_core::verify::check_log(&existing, &signed, &options.signer.verifier())
                .map_err(|e| FileAuditError::Malformed {
                    path: match e {
                        approvals_core::verify::VerifyError::Checkpoint { .. } => {
                            super::checkpoints_path(&path)
                        }
                        _ => path.clone(),
                    },
                    what: e.to_string(),
                })?;
        options
            .check_origin(signed.last().map(String::as_str))
            .map_err(|e| FileAuditError::Malformed {
                path: checkpoints_path(&path),
                what: e.to_string(),
            })?;
        let head = LogHead::resume(&report, SystemClock.now().unix_micros());
        let open = |p: &Path| {
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .map_err(|e| FileAuditError::io(p, e))
        };
        let file = open(&path)?;
        let checkpoints = open(&checkpoints_path(&path))?;
        let n = report.records;
        let audit = Self {
            inner: Arc::new(Inner {
                options,
                durability,
                synced: watch::Sender::new(n),
                signed: watch::Sender::new(head.signed_size()),
                leader: tokio::sync::Mutex::new(()),
                state: Mutex::new(State {
                    file,
                    checkpoints,
                    head,
                    broken: None,
                }),
                path,
            }),
        };
        audit.start_timer();
        Ok(audit)
    }

    /// Signs a checkpoint once `checkpoint_interval` has passed with records not yet
    /// covered, even if no further record arrives. Runs while the sink lives, on the tokio
    /// runtime `open` was called in (without one, checkpoints follow appends and flushes).
    fn start_timer(&self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let weak = Arc::downgrade(&self.inner);
        let every = self
            .inner
            .options
            .checkpoint_interval
            .max(Duration::from_millis(10));
        runtime.spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                let due = tokio::task::spawn_blocking(move || {
                    let mut state = inner.lock();
                    if state
                        .head
                        .is_due(&inner.options, SystemClock.now().unix_micros(), false)
                    {
                        inner.sync_and_checkpoint(&mut state, true)
                    } else {
                        Ok(())
                    }
                })
                .await;
                if let Ok(Err(e)) = due {
                    tracing::error!(error = %e, "could not sign a timed audit checkpoint");
                }
            }
        });
    }

    /// Resolves once a signed checkpoint covers at least `records` records.
    pub async fn signed(&self, records: u64) {
        let mut rx = self.inner.signed.subscribe();
        // The sender lives as long as `self`.
        let _ = rx.wait_for(|n| *n >= records).await;
    }

    /// The log file's path.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Signs a checkpoint of everything appended so far (after syncing it), unless the
    /// latest checkpoint already covers it.
    pub async fn checkpoint(&self) -> Result<(), AuditError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let mut state = inner.lock();
            inner.sync_and_checkpoint(&mut state, true)
        })
        .await
        .map_err(|e| inner_error(&self.inner.path, &e.to_string()))?
    }
}

fn inner_error(path: &Path, message: &str) -> AuditError {
    AuditError::new(format!("file {}", path.display()), message)
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn err(&self, message: impl std::fmt::Display) -> AuditError {
        inner_error(&self.path, &message.to_string())
    }

    /// What the OS said, kept as the error's source.
    fn io(&self, what: &str, e: std::io::Error) -> AuditError {
        inner_error(&self.path, &format!("{what}: {e}")).caused_by(e)
    }

    /// Writes one record; returns its sequence number.
    fn write(&self, state: &mut State, event: AuditEvent) -> Result<u64, AuditError> {
        if let Some(why) = &state.broken {
            return Err(self.err(format!("the log is closed after an earlier failure: {why}")));
        }
        let mut line = state.head.append(event);
        line.line.push('\n');
        if let Err(e) = state.file.write_all(line.line.as_bytes()) {
            // A partial line may be on disk: refuse further appends rather than build on it.
            state.broken = Some(e.to_string());
            return Err(self.io("append", e));
        }
        Ok(line.seq)
    }

    /// Syncs the log and, if due (or `force`), signs and syncs a checkpoint.
    fn sync_and_checkpoint(&self, state: &mut State, force: bool) -> Result<(), AuditError> {
        if let Some(why) = &state.broken {
            return Err(self.err(format!("the log is closed after an earlier failure: {why}")));
        }
        if let Err(e) = state.file.sync_data() {
            // After a failed fdatasync the kernel may have dropped the dirty pages: what is
            // on disk is unknown, so nothing more is appended or signed (fail closed).
            state.broken = Some(format!("fdatasync failed: {e}"));
            return Err(self.io("fdatasync", e));
        }
        let size = state.head.size();
        self.synced.send_replace(size);
        let now = SystemClock.now().unix_micros();
        if !state.head.is_due(&self.options, now, force) {
            return Ok(());
        }
        // Signed on a copy, kept once the checkpoint is on disk: a failed write is tried
        // again at the next sync. (Copied only when one is due: not on every append.)
        let mut next = state.head.clone();
        let Some(signed) = next
            .checkpoint(&self.options, now, force)
            .map_err(|e| self.err(e))?
        else {
            return Ok(());
        };
        let line = serde_json::json!({ "note": signed.note }).to_string() + "\n";
        state
            .checkpoints
            .write_all(line.as_bytes())
            .and_then(|()| state.checkpoints.sync_data())
            .map_err(|e| self.io("checkpoint", e))?;
        state.head = next;
        self.signed.send_replace(signed.size);
        Ok(())
    }
}

#[async_trait]
impl AuditSink for FileAudit {
    async fn append(&self, event: AuditEvent) -> Result<AuditReceipt, AuditError> {
        let inner = self.inner.clone();
        match inner.durability {
            Durability::EveryRecord => tokio::task::spawn_blocking(move || {
                let mut state = inner.lock();
                let seq = inner.write(&mut state, event)?;
                inner.sync_and_checkpoint(&mut state, false)?;
                Ok(AuditReceipt { seq })
            })
            .await
            .map_err(|e| self.inner.err(e))?,
            Durability::Group { max_delay } => {
                let seq = {
                    let mut state = inner.lock();
                    inner.write(&mut state, event)?
                };
                // Group commit: appenders queue for the one sync lock. Whoever holds it
                // syncs everything written so far; those queued behind find their record
                // already covered. No wake-up can be missed: coverage is re-checked under
                // the lock.
                let _turn = inner.leader.lock().await;
                if *inner.synced.borrow() > seq {
                    return Ok(AuditReceipt { seq });
                }
                if !max_delay.is_zero() {
                    // Let more appenders write before the one sync that serves them all.
                    tokio::time::sleep(max_delay).await;
                }
                let lead = inner.clone();
                tokio::task::spawn_blocking(move || {
                    let mut state = lead.lock();
                    lead.sync_and_checkpoint(&mut state, false)
                })
                .await
                .map_err(|e| inner.err(e))??;
                Ok(AuditReceipt { seq })
            }
        }
    }

    async fn flush(&self) -> Result<(), AuditError> {
        self.checkpoint().await
    }
}
