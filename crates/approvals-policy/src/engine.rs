//! [`FilePolicy`]: a policy file as the gate's policy engine and directory, with reload.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use approvals_core::{
    Action, Clock, Context, Directory, Identity, Person, PolicyEngine, PolicyError, Resolution,
    SystemClock, Verdict,
};
use async_trait::async_trait;
use tokio::sync::watch;

use crate::condition::{Condition, Input};
use crate::diagnostic::Diagnostics;
use crate::file;
use crate::model::PolicySet;

/// A policy file could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read policy file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file has errors; each is listed with its line and column.
    #[error("{0}")]
    Invalid(#[from] Diagnostics),
    /// The file watcher could not be started.
    #[error("cannot watch policy file {path}: {message}")]
    Watch {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
}

/// What the last reload did, for whoever watches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadStatus {
    /// Bumped on every reload attempt, successful or not.
    pub attempt: u64,
    /// The version in force (SHA-256 of the source).
    pub version: String,
    /// Why the last attempt was refused, if it was; the previous policy stayed in force.
    pub refused: Option<String>,
}

/// A policy file as the gate's [`PolicyEngine`] (and, through [`FilePolicy::directory`],
/// its [`Directory`]).
///
/// Cheap to clone; clones share the loaded policy, so a reload is seen by every gate using
/// it. A file that fails to load is refused: at start-up with an error (the gate is never
/// built on a broken file), on reload by keeping the policy in force.
///
/// ```
/// use approvals_policy::FilePolicy;
/// let policy = FilePolicy::from_source("inline.toml", r#"
///     [[people]]
///     id = "alice"
///
///     [groups]
///     sre = ["alice"]
///
///     [[policies.restart.rules]]
///     name = "restarts-are-routine"
///     allow = true
/// "#).unwrap();
/// assert_eq!(policy.current().names().len(), 1);
/// ```
#[derive(Clone)]
pub struct FilePolicy {
    shared: Arc<Shared>,
}

struct Shared {
    name: String,
    path: Option<PathBuf>,
    current: RwLock<Arc<PolicySet>>,
    status: watch::Sender<ReloadStatus>,
    /// `now` in conditions: the system clock, [`FilePolicy::with_clock`]'s, or the clock of
    /// the gate that uses this policy, which hands it over when it is built.
    clock: RwLock<Arc<dyn Clock>>,
}

impl std::fmt::Debug for FilePolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FilePolicy")
            .field("file", &self.shared.name)
            .field("version", &self.current().version())
            .finish()
    }
}

impl FilePolicy {
    /// Loads and checks the file at `path`.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, LoadError> {
        let path = path.as_ref();
        let src = read(path)?;
        let set = file::parse(&path.display().to_string(), &src)?;
        Ok(Self::new(
            path.display().to_string(),
            Some(path.to_owned()),
            Arc::new(set),
            Arc::new(SystemClock),
        ))
    }

    /// Loads the file at `path` and reads its `[server]` table as `T`, in one read and one
    /// parse of the file: what a service that keeps its settings beside its policies needs
    /// (`approvals serve`). A `[server]` table that does not fit `T` is an error of the file,
    /// with its line and column.
    pub fn load_with<T: serde::de::DeserializeOwned + Default + Send>(
        path: impl AsRef<Path>,
    ) -> Result<(Self, T), LoadError> {
        let path = path.as_ref();
        let src = read(path)?;
        let (set, server) = file::parse_with::<T>(&path.display().to_string(), &src)?;
        let policy = Self::new(
            path.display().to_string(),
            Some(path.to_owned()),
            Arc::new(set),
            Arc::new(SystemClock),
        );
        Ok((policy, server))
    }

    /// Checks a policy held in memory; `name` is used in messages.
    pub fn from_source(name: &str, src: &str) -> Result<Self, LoadError> {
        let set = file::parse(name, src)?;
        Ok(Self::new(
            name.to_owned(),
            None,
            Arc::new(set),
            Arc::new(SystemClock),
        ))
    }

    fn new(
        name: String,
        path: Option<PathBuf>,
        set: Arc<PolicySet>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let (status, _) = watch::channel(ReloadStatus {
            attempt: 0,
            version: set.version().to_owned(),
            refused: None,
        });
        Self {
            shared: Arc::new(Shared {
                name,
                path,
                current: RwLock::new(set),
                status,
                clock: RwLock::new(clock),
            }),
        }
    }

    /// Uses `clock` for `now` in conditions, for a policy used without a gate (`explain`, a
    /// tool of your own). A gate needs none of this: building it hands the gate's clock to
    /// its policy, so one clock (a `ManualClock` in tests) rules both. Call it right after
    /// loading: the result no longer shares reloads with earlier clones.
    pub fn with_clock(self, clock: impl Clock + 'static) -> Self {
        let s = &self.shared;
        Self::new(
            s.name.clone(),
            s.path.clone(),
            self.current(),
            Arc::new(clock),
        )
    }

    /// `now`, by the clock in use.
    fn now(&self) -> approvals_core::Timestamp {
        self.shared
            .clock
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .now()
    }

    /// The policy in force now.
    pub fn current(&self) -> Arc<PolicySet> {
        self.shared
            .current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// A [`Directory`] that reads the people and groups of the policy in force, so a reload
    /// that changes a group changes who may approve from then on.
    pub fn directory(&self) -> FileDirectory {
        FileDirectory {
            policy: self.clone(),
        }
    }

    /// Re-reads the file. A file with errors is refused and the policy in force stays; the
    /// errors are returned, logged and published to [`FilePolicy::subscribe`]rs. A file
    /// identical to the policy in force changes nothing and publishes nothing.
    pub fn reload(&self) -> Result<String, LoadError> {
        let current = self.current().version().to_owned();
        let Some(path) = &self.shared.path else {
            return Ok(current);
        };
        let src = read(path);
        if let Ok(src) = &src {
            if file::version_of(src) == current && self.shared.status.borrow().refused.is_none() {
                return Ok(current);
            }
        }
        let loaded = src.and_then(|src| {
            file::parse(&path.display().to_string(), &src).map_err(LoadError::from)
        });
        let attempt = self.shared.status.borrow().attempt + 1;
        match loaded {
            Ok(set) => {
                let version = set.version().to_owned();
                *self
                    .shared
                    .current
                    .write()
                    .unwrap_or_else(|e| e.into_inner()) = Arc::new(set);
                tracing::info!(file = %path.display(), %version, "policy reloaded");
                self.shared.status.send_replace(ReloadStatus {
                    attempt,
                    version: version.clone(),
                    refused: None,
                });
                Ok(version)
            }
            Err(e) => {
                let version = self.current().version().to_owned();
                tracing::error!(file = %path.display(), error = %e, kept = %version,
                    "policy reload refused; the policy in force stays");
                self.shared.status.send_replace(ReloadStatus {
                    attempt,
                    version,
                    refused: Some(e.to_string()),
                });
                Err(e)
            }
        }
    }

    /// Reload outcomes, as they happen.
    pub fn subscribe(&self) -> watch::Receiver<ReloadStatus> {
        self.shared.status.subscribe()
    }

    /// Watches the file and reloads it whenever it changes, until the returned guard is
    /// dropped. Editors that save by writing a new file and renaming it over the old one are
    /// handled: the directory is watched, not the file's inode.
    pub fn watch(&self) -> Result<PolicyWatcher, LoadError> {
        use notify::Watcher as _;
        let Some(path) = self.shared.path.clone() else {
            return Err(LoadError::Watch {
                path: PathBuf::from(&self.shared.name),
                message: "the policy was not loaded from a file".into(),
            });
        };
        let watch_err = |e: notify::Error| LoadError::Watch {
            path: path.clone(),
            message: e.to_string(),
        };
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_owned();
        let file_name = path.file_name().map(ToOwned::to_owned);
        let me = self.clone();
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                let Ok(event) = event else { return };
                let ours = event
                    .paths
                    .iter()
                    .any(|p| p.file_name().map(ToOwned::to_owned) == file_name);
                let changes = matches!(
                    event.kind,
                    notify::EventKind::Create(_) | notify::EventKind::Modify(_)
                );
                if ours && changes {
                    // Errors are logged and published by reload itself.
                    let _ = me.reload();
                }
            })
            .map_err(watch_err)?;
        watcher
            .watch(&dir, notify::RecursiveMode::NonRecursive)
            .map_err(watch_err)?;
        Ok(PolicyWatcher { _watcher: watcher })
    }
}

fn read(path: &Path) -> Result<String, LoadError> {
    std::fs::read_to_string(path).map_err(|source| LoadError::Io {
        path: path.to_owned(),
        source,
    })
}

/// Keeps a policy file watched; dropping it stops the watching.
pub struct PolicyWatcher {
    _watcher: notify::RecommendedWatcher,
}

impl std::fmt::Debug for PolicyWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PolicyWatcher")
    }
}

impl FilePolicy {
    /// The verdict and shadow for a call, by the rules loaded now: nothing here awaits.
    fn judge(
        &self,
        action: &Action,
        context: &Context,
    ) -> Result<(Verdict, Option<approvals_core::policy::Shadow>), PolicyError> {
        let set = self.current();
        set.evaluate(action, context, self.now())
            .map(|e| (e.verdict, e.shadow))
            .ok_or_else(|| PolicyError::UnknownPolicy(action.policy.to_string()))
    }
}

#[async_trait]
impl PolicyEngine for FilePolicy {
    async fn evaluate(&self, action: &Action, context: &Context) -> Result<Verdict, PolicyError> {
        self.judge(action, context).map(|(verdict, _)| verdict)
    }

    async fn evaluate_with_shadow(
        &self,
        action: &Action,
        context: &Context,
    ) -> Result<(Verdict, Option<approvals_core::policy::Shadow>), PolicyError> {
        self.judge(action, context)
    }

    fn evaluate_now(
        &self,
        action: &Action,
        context: &Context,
    ) -> Option<Result<(Verdict, Option<approvals_core::policy::Shadow>), PolicyError>> {
        Some(self.judge(action, context))
    }

    fn policy_names(&self) -> Option<BTreeSet<String>> {
        Some(self.current().names())
    }

    fn use_clock(&self, clock: Arc<dyn Clock>) {
        *self
            .shared
            .clock
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = clock;
    }

    fn possible(&self, policy: &str) -> Option<approvals_core::policy::Possible> {
        self.current().possible(policy)
    }

    fn arguments_read(&self, policy: &str) -> Option<Vec<approvals_core::policy::ArgumentRead>> {
        self.current().arguments_read(policy)
    }

    fn check_condition(&self, condition: &str) -> Result<(), PolicyError> {
        Condition::compile(condition)
            .map(drop)
            .map_err(|errors| PolicyError::Evaluation {
                policy: String::new(),
                message: errors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; "),
            })
    }

    fn condition_holds(
        &self,
        condition: &str,
        action: &Action,
        context: &Context,
    ) -> Result<bool, PolicyError> {
        let err = |message: String| PolicyError::Evaluation {
            policy: action.policy.to_string(),
            message,
        };
        let c = Condition::compile(condition).map_err(|errors| {
            err(errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "))
        })?;
        let set = self.current();
        let input = Input::new(action, context, set.directory(), self.now());
        c.eval(&input).map_err(err)
    }
}

/// The people and groups of a [`FilePolicy`], as the policy in force defines them.
#[derive(Debug, Clone)]
pub struct FileDirectory {
    policy: FilePolicy,
}

impl Directory for FileDirectory {
    fn groups_of(&self, principal_id: &str) -> BTreeSet<String> {
        self.policy.current().directory().groups_of(principal_id)
    }
    fn person(&self, principal_id: &str) -> Option<Person> {
        self.policy.current().directory().person(principal_id)
    }
    fn members(&self, group: &str) -> Option<BTreeSet<String>> {
        self.policy.current().directory().members(group)
    }
    fn find(&self, identity: Identity<'_>) -> Option<Person> {
        self.policy.current().directory().find(identity)
    }
    fn resolve(&self, name: &str) -> Resolution {
        self.policy.current().directory().resolve(name)
    }
}
