//! The link to a bus: a Modbus client context over TCP (MBAP), over a TCP stream carrying raw RTU
//! frames (transparent serial servers, DTUs), or over a local serial port.
//!
//! Invariants: one transaction at a time (the bus task owns the link); every request has a
//! timeout; after a timeout or any transport or protocol error the connection is dropped, so a
//! late reply can never be taken for the answer to the next request. Modbus exceptions ("the
//! device said no") come back as `Ok(Err(code))` and leave the connection up.

use std::time::Duration;

use thiserror::Error;
use tokio::time::{timeout, Instant};
use tokio_modbus::client::{rtu, tcp, Context, Reader};
use tokio_modbus::slave::{Slave, SlaveContext};
use tokio_modbus::ExceptionCode;

use crate::config::{BusConfig, Function, TransportKind};
use crate::sources::wire;

use super::plan::ReadRequest;
use super::timing::inter_frame_gap;

/// The link failed; the device may be fine.
#[derive(Debug, Error)]
pub enum LinkError {
    #[error("no reply within {0:?}")]
    Timeout(Duration),
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("transport: {0}")]
    Transport(String),
}

/// A successful reply.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Words(Vec<u16>),
    Bits(Vec<bool>),
}

pub struct Link {
    transport: TransportKind,
    address: Option<String>,
    serial: Option<tokio_serial::SerialPortBuilder>,
    timeout: Duration,
    gap: Duration,
    context: Option<Context>,
    /// End of the last transaction, for the inter-frame gap.
    quiet_since: Option<Instant>,
}

impl Link {
    pub fn new(bus: &BusConfig) -> Link {
        let serial = wire::serial_port(bus, 9600);
        Link {
            transport: bus.transport,
            address: bus.address.clone(),
            serial,
            timeout: bus.timeout.get(),
            gap: inter_frame_gap(bus),
            context: None,
            quiet_since: None,
        }
    }

    pub fn is_connected(&self) -> bool {
        self.context.is_some()
    }

    /// Drops the connection; the next read reconnects.
    pub fn disconnect(&mut self) {
        self.context = None;
    }

    async fn connect(&mut self) -> Result<Context, LinkError> {
        let address = self.address.as_deref().unwrap_or_default();
        let stream = || async { wire::connect_tcp(address).await.map_err(LinkError::Connect) };
        match self.transport {
            TransportKind::Tcp => Ok(tcp::attach(stream().await?)),
            TransportKind::RtuOverTcp => Ok(rtu::attach(stream().await?)),
            TransportKind::Rtu => wire::open_serial(self.serial.as_ref())
                .map(rtu::attach)
                .map_err(LinkError::Connect),
        }
    }

    /// One read transaction with unit `unit`.
    pub async fn read(
        &mut self,
        unit: u8,
        request: &ReadRequest,
    ) -> Result<Result<Reply, ExceptionCode>, LinkError> {
        if let Some(quiet) = self.quiet_since {
            crate::sources::wait_until(quiet + self.gap).await;
        }
        let mut context = match self.context.take() {
            Some(context) => context,
            None => self.connect().await?,
        };
        context.set_slave(Slave(unit));
        let (start, count) = (request.start, request.count);
        let call = async {
            match request.function {
                Function::ReadCoils => context
                    .read_coils(start, count)
                    .await
                    .map(|r| r.map(Reply::Bits)),
                Function::ReadDiscreteInputs => context
                    .read_discrete_inputs(start, count)
                    .await
                    .map(|r| r.map(Reply::Bits)),
                Function::ReadHoldingRegisters => context
                    .read_holding_registers(start, count)
                    .await
                    .map(|r| r.map(Reply::Words)),
                Function::ReadInputRegisters => context
                    .read_input_registers(start, count)
                    .await
                    .map(|r| r.map(Reply::Words)),
            }
        };
        let outcome = timeout(self.timeout, call).await;
        self.quiet_since = Some(Instant::now());
        match outcome {
            Err(_) => Err(LinkError::Timeout(self.timeout)),
            Ok(Err(e)) => Err(LinkError::Transport(e.to_string())),
            Ok(Ok(result)) => {
                self.context = Some(context);
                Ok(result)
            }
        }
    }
}
