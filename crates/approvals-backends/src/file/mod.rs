//! An append-only JSONL audit log with signed checkpoints (feature `file`).
//!
//! `audit.jsonl` holds one canonical JSON record per line (the Merkle leaf is the line
//! without its newline); `audit.jsonl.checkpoints` beside it holds one signed checkpoint
//! per line, as `{"note":"<C2SP signed note>"}`. See `docs/audit-format.md`.

mod keys;
mod sink;

pub use keys::{load_signer, write_new_signer};
pub use sink::{Durability, FileAudit, FileAuditError, FileAuditOptions};

use std::path::{Path, PathBuf};

/// The checkpoints file that belongs to a log file.
pub fn checkpoints_path(log: &Path) -> PathBuf {
    let mut name = log.as_os_str().to_owned();
    name.push(".checkpoints");
    PathBuf::from(name)
}

/// Reads the signed checkpoints kept beside a log, oldest first.
pub fn read_checkpoints(log: &Path) -> Result<Vec<String>, FileAuditError> {
    let path = checkpoints_path(log);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(FileAuditError::io(&path, e)),
    };
    text.lines()
        .enumerate()
        .map(|(i, line)| {
            #[derive(serde::Deserialize)]
            struct Line {
                note: String,
            }
            serde_json::from_str::<Line>(line)
                .map(|l| l.note)
                .map_err(|e| FileAuditError::Malformed {
                    path: path.clone(),
                    what: format!("line {}: {e}", i + 1),
                })
        })
        .collect()
}
