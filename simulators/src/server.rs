//! Modbus servers for the simulated buses. One listener per bus; every unit id on the bus is
//! answered by the same service, as a serial server or DTU forwards every frame to the shared
//! RS-485 line. A silent device sends nothing; a slow one answers late; an exception device
//! answers 0x04 (server device failure).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio_modbus::prelude::{ExceptionCode, Request, Response, SlaveRequest};
use tokio_modbus::server::Service;

use crate::registers::Table;
use crate::world::{Behaviour, World};

/// How late a device with the `slow_replies` fault answers.
pub const SLOW_REPLY_DELAY: Duration = Duration::from_millis(300);

/// Locks shared simulator state; a holder that panicked does not stop the simulation.
pub fn lock<T>(shared: &Mutex<T>) -> MutexGuard<'_, T> {
    shared
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Answers the requests of one bus.
#[derive(Clone)]
pub struct BusService {
    pub world: Arc<Mutex<World>>,
    pub bus: Arc<str>,
}

type Reply = Result<Option<Response>, ExceptionCode>;

impl BusService {
    /// The reply, and how long to hold it, without holding the lock across an await.
    fn answer(&self, request: &SlaveRequest<'_>) -> (Reply, Duration) {
        let mut world = lock(&self.world);
        let Some(index) = world
            .devices
            .iter()
            .position(|d| *d.bus == *self.bus && d.unit == request.slave)
        else {
            // Nobody at this unit id: on a serial line, silence.
            return (Ok(None), Duration::ZERO);
        };
        let behaviour = world.behaviour(&world.devices[index].id.clone());
        let frozen = world.frozen;
        let device = &mut world.devices[index];
        match behaviour {
            Behaviour::Silent => return (Ok(None), Duration::ZERO),
            Behaviour::Exception => {
                device.reads += 1;
                return (Err(ExceptionCode::ServerDeviceFailure), Duration::ZERO);
            }
            Behaviour::Normal | Behaviour::Slow | Behaviour::BadChecksum | Behaviour::Garbled => {}
        }
        device.answered(frozen);
        let delay = if behaviour == Behaviour::Slow {
            SLOW_REPLY_DELAY
        } else {
            Duration::ZERO
        };
        let reply = match &request.request {
            Request::ReadHoldingRegisters(start, count)
                if device.touches_unmapped(Table::Holding, *start, *count) =>
            {
                Err(ExceptionCode::IllegalDataAddress)
            }
            Request::ReadInputRegisters(start, count)
                if device.touches_unmapped(Table::Input, *start, *count) =>
            {
                Err(ExceptionCode::IllegalDataAddress)
            }
            Request::ReadHoldingRegisters(start, count) => device
                .image
                .read(Table::Holding, *start, *count)
                .map(|words| Some(Response::ReadHoldingRegisters(words)))
                .ok_or(ExceptionCode::IllegalDataAddress),
            Request::ReadInputRegisters(start, count) => device
                .image
                .read(Table::Input, *start, *count)
                .map(|words| Some(Response::ReadInputRegisters(words)))
                .ok_or(ExceptionCode::IllegalDataAddress),
            _ => Err(ExceptionCode::IllegalFunction),
        };
        (reply, delay)
    }
}

impl Service for BusService {
    type Request = SlaveRequest<'static>;
    type Response = Option<Response>;
    type Exception = ExceptionCode;
    type Future = Pin<Box<dyn Future<Output = Reply> + Send>>;

    fn call(&self, request: Self::Request) -> Self::Future {
        let (reply, delay) = self.answer(&request);
        Box::pin(async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            reply
        })
    }
}
