//! In-memory store and audit sink: for tests and single-process tools.

mod audit;
mod store;

pub use audit::{MemoryAudit, MemoryRecords};
pub use store::MemoryStore;
