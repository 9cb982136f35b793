//! See benches/cedar_compare.rs.
