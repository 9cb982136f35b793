//! In-memory store and audit sink: for tests and single-process tools.

mod audit;
mod store;

pub use audit::MemoryAudit;
pub use store::MemoryStore;
