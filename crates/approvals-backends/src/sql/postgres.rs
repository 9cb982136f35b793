//! Postgres (placeholder until written).
