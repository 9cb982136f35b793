//! Signing keys on disk.

use std::io::Write;
use std::path::Path;

use approvals_core::note::NoteSigner;

use super::FileAuditError;

/// Reads a signer key file (`PRIVATE+KEY+...`, as `approvals keygen` writes it).
pub fn load_signer(path: &Path) -> Result<NoteSigner, FileAuditError> {
    let text = std::fs::read_to_string(path).map_err(|e| FileAuditError::io(path, e))?;
    NoteSigner::from_skey(&text).map_err(|e| FileAuditError::Malformed {
        path: path.to_owned(),
        what: e.to_string(),
    })
}

/// Generates a key named `name`, writes it to `path` readable by its owner only (0600), and
/// returns it. Refuses to overwrite an existing file.
pub fn write_new_signer(path: &Path, name: &str) -> Result<NoteSigner, FileAuditError> {
    let signer = NoteSigner::generate(name).map_err(|e| FileAuditError::Malformed {
        path: path.to_owned(),
        what: e.to_string(),
    })?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .map_err(|e| FileAuditError::io(path, e))?;
    writeln!(file, "{}", signer.to_skey())
        .and_then(|()| file.sync_all())
        .map_err(|e| FileAuditError::io(path, e))?;
    Ok(signer)
}
