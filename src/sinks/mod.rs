//! Where samples go.

pub mod influx;
pub mod line_file;
