//! Backends of [`approvals`](https://docs.rs/approvals): stores, audit sinks and approvers,
//! each behind a cargo feature of its own name.
//!
//! | feature | what |
//! |---|---|
//! | `memory` (default) | [`memory::MemoryStore`], [`memory::MemoryAudit`], [`mock::MockApprover`] |
//! | `file` | [`file::FileAudit`]: append-only JSONL audit log with signed checkpoints |
//! | `terminal` (default) | [`terminal::TerminalApprover`]: a yes/no prompt for local development |
#![warn(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[cfg(feature = "file")]
pub mod file;
#[cfg(feature = "memory")]
pub mod memory;
#[cfg(feature = "memory")]
pub mod mock;
#[cfg(feature = "terminal")]
pub mod terminal;
