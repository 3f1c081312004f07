//! Where samples go: line protocol to a file or standard output ([`line_file`]), and the durable
//! path to InfluxDB: [`telemetry_log`] appends every sample to the disk log, and
//! [`influx::forwarder`] delivers the log to InfluxDB. Files they keep on the card
//! ([`rotating_file`]) are capped.

pub mod influx;
pub mod line_file;
pub mod mqtt;
pub mod rotating_file;
pub mod telemetry_log;
pub mod webhook;
