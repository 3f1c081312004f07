//! InfluxDB output: one write request ([`mod@write`]), what to do with
//! the answer ([`verdict`], DESIGN.md's response table) and the loop that drains the telemetry log
//! into InfluxDB ([`forwarder`]).
//!
//! Owns: batching (≤ 5 000 lines, ≤ 1 MiB, at least every `flush_interval`), gzip, retries with
//! jittered backoff, Retry-After, splitting and bisecting refused batches, the dead-letter file.
//! Does not own: durability (the telemetry log in [`crate::buffer`]) or what a sample is.

pub mod forwarder;
pub mod verdict;
pub mod write;
