//! InfluxDB output. For now only the line-protocol encoder; the durable write path comes with the
//! store-and-forward work.

pub mod line_protocol;
