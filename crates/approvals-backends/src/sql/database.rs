//! One handle for whichever database a URL names.

use std::sync::Arc;

use approvals_core::StoreError;
use approvals_core::store::Store;

use super::{ExportedLog, OpenError, SqlAudit, SqlAuditOptions};

/// The store and audit log in the database a URL names: `sqlite:PATH` (or
/// `sqlite://PATH`), or `postgres://...` / `postgresql://...`, where a `schema=NAME` query
/// parameter picks the schema.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use approvals_backends::sql::Database;
/// let db = Database::open("sqlite:approvals.db").await?;
/// let store = db.store();
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Database {
    /// An SQLite file.
    #[cfg(feature = "sqlite")]
    Sqlite(super::sqlite::Sqlite),
    /// A Postgres database.
    #[cfg(feature = "postgres")]
    Postgres(super::postgres::Postgres),
}

impl Database {
    /// Opens the database, creating and migrating it as needed.
    pub async fn open(url: &str) -> Result<Self, OpenError> {
        Self::connect(url, false).await
    }

    /// Opens an existing database only to read it (`approvals audit verify --db`): an
    /// SQLite file is opened read-only; a Postgres schema must already exist at this
    /// build's version. Nothing is created or migrated.
    pub async fn open_existing(url: &str) -> Result<Self, OpenError> {
        Self::connect(url, true).await
    }

    async fn connect(url: &str, existing: bool) -> Result<Self, OpenError> {
        if let Some(path) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        {
            #[cfg(feature = "sqlite")]
            {
                let db = if existing {
                    super::sqlite::Sqlite::open_read_only(path).await?
                } else {
                    super::sqlite::Sqlite::open(path).await?
                };
                return Ok(Database::Sqlite(db));
            }
            #[cfg(not(feature = "sqlite"))]
            return Err(unsupported(path, "sqlite"));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            #[cfg(feature = "postgres")]
            {
                let (url, schema) = split_schema(url);
                let options = super::postgres::PostgresOptions {
                    schema,
                    migrate: !existing,
                    ..Default::default()
                };
                return Ok(Database::Postgres(
                    super::postgres::Postgres::connect_with(&url, options).await?,
                ));
            }
            #[cfg(not(feature = "postgres"))]
            return Err(unsupported(url, "postgres"));
        }
        Err(OpenError::Connect {
            database: url.to_owned(),
            message: "not a database URL: use sqlite:PATH or postgres://USER@HOST/DB".into(),
        })
    }

    /// The store.
    pub fn store(&self) -> Arc<dyn Store> {
        match self {
            #[cfg(feature = "sqlite")]
            Database::Sqlite(d) => Arc::new(d.clone()),
            #[cfg(feature = "postgres")]
            Database::Postgres(d) => Arc::new(d.clone()),
        }
    }

    /// The audit log.
    pub async fn audit(&self, options: SqlAuditOptions) -> Result<SqlAudit, OpenError> {
        match self {
            #[cfg(feature = "sqlite")]
            Database::Sqlite(d) => d.audit(options).await,
            #[cfg(feature = "postgres")]
            Database::Postgres(d) => d.audit(options).await,
        }
    }

    /// The whole audit log and its checkpoints.
    pub async fn export_audit(&self) -> Result<ExportedLog, StoreError> {
        match self {
            #[cfg(feature = "sqlite")]
            Database::Sqlite(d) => d.export_audit().await,
            #[cfg(feature = "postgres")]
            Database::Postgres(d) => d.export_audit().await,
        }
    }

    /// Closes every connection.
    pub async fn close(&self) {
        match self {
            #[cfg(feature = "sqlite")]
            Database::Sqlite(d) => d.close().await,
            #[cfg(feature = "postgres")]
            Database::Postgres(d) => d.close().await,
        }
    }
}

#[allow(dead_code)]
fn unsupported(database: &str, feature: &str) -> OpenError {
    OpenError::Connect {
        database: database.to_owned(),
        message: format!("this build of approvals has no `{feature}` feature"),
    }
}

/// Takes a `schema=NAME` query parameter out of a Postgres URL.
#[cfg(feature = "postgres")]
fn split_schema(url: &str) -> (String, Option<String>) {
    let Some((base, query)) = url.split_once('?') else {
        return (url.to_owned(), None);
    };
    let mut schema = None;
    let rest: Vec<&str> = query
        .split('&')
        .filter(|kv| match kv.strip_prefix("schema=") {
            Some(s) => {
                schema = Some(s.to_owned());
                false
            }
            None => true,
        })
        .collect();
    let url = if rest.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", rest.join("&"))
    };
    (url, schema)
}

#[cfg(all(test, feature = "postgres"))]
mod tests {
    #[test]
    fn the_schema_parameter_is_taken_out_of_the_url() {
        assert_eq!(
            super::split_schema("postgres://u@h/db?sslmode=require&schema=app"),
            (
                "postgres://u@h/db?sslmode=require".to_owned(),
                Some("app".to_owned())
            )
        );
        assert_eq!(
            super::split_schema("postgres://u@h/db?schema=app"),
            ("postgres://u@h/db".to_owned(), Some("app".to_owned()))
        );
        assert_eq!(
            super::split_schema("postgres://u@h/db"),
            ("postgres://u@h/db".to_owned(), None)
        );
    }
}

#[async_trait::async_trait]
impl approvals_core::log::AuditLog for Database {
    async fn read_log(&self) -> Result<ExportedLog, StoreError> {
        self.export_audit().await
    }
}
