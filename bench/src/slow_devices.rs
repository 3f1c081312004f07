//! Modbus TCP devices that answer late, the way RS-485 meters behind a serial server or a 4G DTU
//! do (2–100 ms): one endpoint, units 1..=N, each answering a read of its 60 holding registers
//! after a fixed delay. Requests on one connection are answered one at a time, as on a bus.
//!
//!     slow-devices --port 16100 --units 100 --delay-ms 20

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use retrofit_bench::{number_arg, registers, REGISTERS};
use tokio_modbus::prelude::{ExceptionCode, Request, Response, SlaveRequest};
use tokio_modbus::server::Service;

#[derive(Clone)]
struct SlowMeters {
    units: u8,
    delay: Duration,
    /// Reads answered per unit (the value's tick).
    reads: Arc<Vec<AtomicU64>>,
}

type Reply = Result<Option<Response>, ExceptionCode>;

impl Service for SlowMeters {
    type Request = SlaveRequest<'static>;
    type Response = Option<Response>;
    type Exception = ExceptionCode;
    type Future = Pin<Box<dyn Future<Output = Reply> + Send>>;

    fn call(&self, request: Self::Request) -> Self::Future {
        let unit = request.slave;
        let reply = if unit == 0 || unit > self.units {
            Ok(None)
        } else {
            match request.request {
                Request::ReadHoldingRegisters(0, count) if count == REGISTERS => {
                    let tick = self.reads[usize::from(unit)].fetch_add(1, Ordering::Relaxed);
                    Ok(Some(Response::ReadHoldingRegisters(registers(unit, tick))))
                }
                Request::ReadHoldingRegisters(..) => Err(ExceptionCode::IllegalDataAddress),
                _ => Err(ExceptionCode::IllegalFunction),
            }
        };
        let delay = self.delay;
        Box::pin(async move {
            tokio::time::sleep(delay).await;
            reply
        })
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let port = u16::try_from(number_arg(&args, "--port", 16100)?)?;
    let units = number_arg(&args, "--units", 100)?.min(247) as u8;
    let delay = Duration::from_millis(number_arg(&args, "--delay-ms", 20)?);
    let service = SlowMeters {
        units,
        delay,
        reads: Arc::new((0..=u16::from(units)).map(|_| AtomicU64::new(0)).collect()),
    };
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("slow-devices: {units} units on 127.0.0.1:{port}, answering after {delay:?}");
    let server = tokio_modbus::server::tcp::Server::new(listener);
    let on_connected = |stream, _address| {
        let service = service.clone();
        async move { Ok(Some((service, stream))) }
    };
    server
        .serve(&on_connected, |e| eprintln!("slow-devices: {e}"))
        .await?;
    Ok(())
}
