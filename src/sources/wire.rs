//! Opening the byte streams buses run on: a TCP connection (Modbus TCP, or a transparent serial
//! server carrying raw frames) or a local serial port, each with a bounded wait.

use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::config::{BusConfig, Parity};

/// How long establishing a connection may take (4G DTUs can be slow to accept).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Connects to `address` (`host:port`) within [`CONNECT_TIMEOUT`]; the reason when it cannot.
pub async fn connect_tcp(address: &str) -> Result<TcpStream, String> {
    match timeout(CONNECT_TIMEOUT, TcpStream::connect(address)).await {
        Err(_) => Err(format!("{address}: no answer within {CONNECT_TIMEOUT:?}")),
        Ok(Err(e)) => Err(format!("{address}: {e}")),
        Ok(Ok(stream)) => {
            let _ = stream.set_nodelay(true);
            Ok(stream)
        }
    }
}

/// The serial port settings of a bus with a `device`.
pub fn serial_port(bus: &BusConfig, default_baud: u32) -> Option<tokio_serial::SerialPortBuilder> {
    let path = bus.device.as_ref()?;
    let builder = tokio_serial::new(path.to_string_lossy(), bus.baud.unwrap_or(default_baud))
        .data_bits(if bus.data_bits == 7 {
            tokio_serial::DataBits::Seven
        } else {
            tokio_serial::DataBits::Eight
        })
        .stop_bits(if bus.stop_bits == 2 {
            tokio_serial::StopBits::Two
        } else {
            tokio_serial::StopBits::One
        })
        .parity(match bus.parity {
            Parity::None => tokio_serial::Parity::None,
            Parity::Even => tokio_serial::Parity::Even,
            Parity::Odd => tokio_serial::Parity::Odd,
        });
    Some(builder)
}

/// Opens a serial port; the reason when it cannot.
pub fn open_serial(
    builder: Option<&tokio_serial::SerialPortBuilder>,
) -> Result<tokio_serial::SerialStream, String> {
    let builder = builder.ok_or("no serial device configured")?;
    tokio_serial::SerialStream::open(builder).map_err(|e| e.to_string())
}
