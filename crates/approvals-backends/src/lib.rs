//! Backends of [`approvals`](https://docs.rs/approvals): stores, audit sinks and approvers,
//! each behind a cargo feature of its own name.
//!
//! | feature | what |
//! |---|---|
//! | `memory` (default) | [`memory::MemoryStore`], [`memory::MemoryAudit`], [`mock::MockApprover`] |
//! | `file` | [`file::FileAudit`]: append-only JSONL audit log with signed checkpoints |
//! | `sqlite` | [`sqlite::Sqlite`]: requests, grants and the signed audit log in one SQLite file |
//! | `postgres` | [`postgres::Postgres`]: the same in Postgres, for many processes and hosts |
//! | `http` | [`http::ApprovalService`]: the REST API, reviewer tokens, signed decisions, the shared router |
//! | `teams` | [`teams::TeamsApprover`]: Adaptive Cards through a bot or a Workflows webhook, verified invokes, signed links |
//! | `slack` | [`slack::SlackApprover`]: Block Kit requests, verified clicks, updated messages |
//! | `mcp` | [`mcp::Gateway`]: every tool call of an MCP server judged by the gate (rmcp) |
//! | `conformance` | [`conformance`]: the suite every Store and AuditSink must pass |
//! | `terminal` (default) | [`terminal::TerminalApprover`]: a yes/no prompt for local development |
#![warn(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[cfg(feature = "conformance")]
pub mod conformance;
#[cfg(feature = "file")]
pub mod file;
#[cfg(feature = "http")]
pub mod http;
#[cfg(feature = "postgres")]
pub use sql::postgres;
#[cfg(feature = "mcp")]
pub mod mcp;
#[cfg(any(feature = "http", feature = "slack"))]
mod retry;
// The console (http) reads a reviewer's edits with it; Slack and Teams use the rest, each
// its part.
#[cfg(any(feature = "slack", feature = "http"))]
#[cfg_attr(not(all(feature = "slack", feature = "teams")), allow(dead_code))]
mod shown;
#[cfg(feature = "slack")]
pub mod slack;
#[cfg(feature = "sql")]
pub mod sql;
#[cfg(feature = "teams")]
pub mod teams;
#[cfg(feature = "sqlite")]
pub use sql::sqlite;
#[cfg(feature = "memory")]
pub mod memory;
#[cfg(feature = "memory")]
pub mod mock;
#[cfg(any(feature = "memory", feature = "sql"))]
mod stored;
#[cfg(feature = "terminal")]
pub mod terminal;
