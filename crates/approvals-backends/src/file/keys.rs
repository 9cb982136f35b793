//! Signing keys on disk.

use std::io::Write;
use std::path::Path;

use approvals_core::note::NoteSigner;

use super::FileAuditError;

/// Reads a signer key file (`PRIVATE+KEY+...`, as `approvals keygen` writes it).
///
/// As OpenSSH does with its keys, a key file that its group or others may read or write is
/// refused ([`FileAuditError::Unprotected`]): whoever can read an audit signing key can sign
/// a rewritten log, and whoever can read a reviewer's key can approve as them.
pub fn load_signer(path: &Path) -> Result<NoteSigner, FileAuditError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(path).map_err(|e| FileAuditError::io(path, e))?;
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(FileAuditError::Unprotected {
                path: path.to_owned(),
                mode,
            });
        }
    }
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

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// Issue 14: a reviewer key file readable by others (0644) was used without a word.
    #[test]
    fn a_key_file_others_may_read_is_refused_until_made_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("reviewer.key");
        let written = write_new_signer(&path, "alice").unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(load_signer(&path).unwrap().to_skey(), written.to_skey());
        for mode in [0o644, 0o640, 0o604, 0o660] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let err = load_signer(&path).unwrap_err();
            assert!(
                matches!(err, FileAuditError::Unprotected { .. }),
                "{mode:o}: {err}"
            );
            assert!(err.to_string().contains("chmod 600"), "{err}");
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
        assert!(
            load_signer(&path).is_ok(),
            "read-only to its owner is private"
        );
    }
}
