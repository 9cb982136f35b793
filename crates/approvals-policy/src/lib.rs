//! Policy as code for [`approvals`](https://docs.rs/approvals): an `approvals.toml` file
//! with a directory of reviewers and, per policy name, ordered rules with CEL conditions.
//!
//! ```
//! use approvals_core::{Action, Context, Principal, Verdict};
//! use approvals_policy::FilePolicy;
//!
//! let policy = FilePolicy::from_source("approvals.toml", r#"
//!     [[people]]
//!     id = "alice"
//!     [[people]]
//!     id = "bob"
//!
//!     [groups]
//!     data-owners = ["alice", "bob"]
//!
//!     [[policies.export.rules]]
//!     name = "small-exports"
//!     when = "args.limit <= 100"
//!     allow = true
//!
//!     [[policies.export.rules]]
//!     name = "exports-need-an-owner"
//!     require = [{ group = "data-owners", count = 1 }]
//!     expires_in = "1h"
//! "#).unwrap();
//!
//! let set = policy.current();
//! let ctx = Context::new(Principal::agent("ops-bot"));
//! let small = Action::builder("export", "export").arg("limit", &10).build().unwrap();
//! let big = Action::builder("export", "export").arg("limit", &5000).build().unwrap();
//! let now = approvals_core::Timestamp::now();
//! assert!(matches!(set.evaluate(&small, &ctx, now).unwrap().verdict, Verdict::Allow { .. }));
//! assert!(matches!(set.evaluate(&big, &ctx, now).unwrap().verdict, Verdict::RequireApproval(_)));
//! ```
//!
//! The format is documented in `docs/policy.md`.
#![warn(missing_docs)]
#![warn(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod condition;
pub mod diagnostic;
mod engine;
pub mod file;
pub mod model;

pub use diagnostic::{Diagnostic, Diagnostics};
pub use engine::{FileDirectory, FilePolicy, LoadError, PolicyWatcher, ReloadStatus};
pub use model::{Check, Evaluation, FactorApprovers, Outcome, Policy, PolicySet, Rule};
