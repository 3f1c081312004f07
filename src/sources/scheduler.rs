//! The bus scheduler: one task owns one bus and polls its devices, one poll at a time, whatever
//! protocol the bus speaks (Modbus in [`super::modbus::bus`], meters in [`super::meters::bus`]).
//!
//! Each device is polled at a fixed rate (`next_due += interval`), so a late poll does not shift
//! the ones after it; a poll that could only start more than a whole interval late is skipped
//! and counted. A protocol stops a poll at its first link failure (timeout, I/O) and drops the
//! connection, so one silent device costs the bus at most one timeout per poll. After
//! [`OFFLINE_AFTER`] failed polls in a row the device is offline and only probed after a
//! jittered, growing pause (up to the bus's `max_backoff`), so it never delays the healthy
//! devices on the same bus. A failed connect backs off the whole bus ([`ConnectGate`]).
//!
//! A bus hands its samples on together ([`Handing`]): before it waits for its next due poll, or
//! once the oldest has waited [`HAND_ON_AFTER`] on a bus that never idles. The stages behind it
//! then wake once for several polls instead of once per poll, which on a device answering in
//! milliseconds is most of what they cost; the wait needs no timer of its own.
//!
//! Not handled here: the wire (the [`Protocol`]), what happens to samples downstream (the
//! channel applies back-pressure; a full channel delays polling rather than dropping data).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::backoff::Backoff;
use crate::config::{BusConfig, DeviceConfig, LoadedConfig, Profile};
use crate::model::{unix_nanos, Field, Sample, TagSet};

use super::modbus::status::{CommState, StatusBoard};

/// Failed polls in a row after which a device counts as offline.
pub const OFFLINE_AFTER: u32 = 3;

/// The longest a sample waits in its bus task on a bus that polls without a pause.
pub const HAND_ON_AFTER: Duration = Duration::from_millis(250);

/// What one poll of one device gave.
#[derive(Debug, Default)]
pub struct PollOutcome {
    pub fields: Vec<Field>,
    /// When the device first answered (with data or a refusal).
    pub answered_at: Option<SystemTime>,
    /// Requests answered with data.
    pub transactions: u64,
    /// Requests the device refused (Modbus exceptions, meters' error replies).
    pub refusals: u64,
    /// Values the replies carried that could not be decoded.
    pub decode_errors: u64,
    /// Why the poll stopped early, when the link failed.
    pub link_failure: Option<LinkFailure>,
}

impl PollOutcome {
    /// Notes that the device answered (now, unless it already had).
    pub fn answered(&mut self) {
        self.answered_at.get_or_insert_with(SystemTime::now);
    }
}

/// A failed link: no reply in time, or the transport failed.
#[derive(Debug)]
pub struct LinkFailure {
    pub timeout: bool,
    pub reason: String,
}

/// How a bus's devices are read.
pub trait Protocol: Send {
    /// What the protocol needs to know about one device (its address and what to read).
    type Plan: Send;

    /// Polls one device once. `cycle` counts the device's polls (points polled less often use
    /// it).
    fn poll(
        &mut self,
        plan: &mut Self::Plan,
        id: &str,
        cycle: u64,
    ) -> impl Future<Output = PollOutcome> + Send;
}

/// One device as the scheduler sees it.
pub struct ScheduledDevice<P> {
    id: Arc<str>,
    measurement: Arc<str>,
    tags: TagSet,
    plan: P,
    interval: Duration,
    next_due: Instant,
    cycle: u64,
    failures_in_a_row: u32,
    backoff: Backoff,
    /// While offline: when to probe next.
    probe_at: Option<Instant>,
}

impl<P> ScheduledDevice<P> {
    /// A configured device, first due now; `max_backoff` is its bus's.
    fn new(
        config: &LoadedConfig,
        device: &DeviceConfig,
        measurement: &str,
        plan: P,
        max_backoff: Duration,
    ) -> Self {
        let interval = device.interval.get();
        ScheduledDevice {
            id: Arc::from(device.id.as_str()),
            measurement: Arc::from(measurement),
            tags: config.device_tags(device),
            plan,
            interval,
            next_due: Instant::now(),
            cycle: 0,
            failures_in_a_row: 0,
            backoff: Backoff::new(interval.max(Duration::from_secs(1)), max_backoff),
            probe_at: None,
        }
    }

    fn due_at(&self) -> Instant {
        self.probe_at.unwrap_or(self.next_due)
    }
}

/// Whether a bus may try to connect: after a failed connect, not before a jittered, growing
/// pause has passed.
pub struct ConnectGate {
    bus: Arc<str>,
    backoff: Backoff,
    reconnect_at: Option<Instant>,
}

impl ConnectGate {
    pub fn new(bus: &str, max_backoff: Duration) -> Self {
        ConnectGate {
            bus: Arc::from(bus),
            backoff: Backoff::new(Duration::from_secs(1), max_backoff),
            reconnect_at: None,
        }
    }

    /// Why no connect may be tried now, if none may.
    pub fn closed(&self) -> Option<&'static str> {
        self.reconnect_at
            .filter(|at| Instant::now() < *at)
            .map(|_| "bus is backing off after a failed connect")
    }

    pub fn failed(&mut self, reason: &str) {
        let delay = self.backoff.next_delay();
        if self.reconnect_at.is_none() {
            tracing::warn!(bus = %self.bus, reason = %reason, retry_in = ?delay, "Bus cannot connect; backing off");
        }
        self.reconnect_at = Some(Instant::now() + delay);
    }

    pub fn succeeded(&mut self) {
        if self.reconnect_at.take().is_some() {
            tracing::info!(bus = %self.bus, "Bus connected again");
        }
        self.backoff.reset();
    }
}

/// The samples a bus has polled and not yet handed on, and when the first of them came.
struct Handing {
    samples: mpsc::Sender<Sample>,
    held: Vec<Sample>,
    since: Instant,
}

impl Handing {
    fn hold(&mut self, sample: Sample) {
        if self.held.is_empty() {
            self.since = Instant::now();
        }
        self.held.push(sample);
    }

    fn overdue(&self) -> bool {
        !self.held.is_empty() && self.since.elapsed() >= HAND_ON_AFTER
    }

    /// Sends what is held, in poll order; false when the channel is closed.
    async fn hand_on(&mut self) -> bool {
        for sample in self.held.drain(..) {
            if self.samples.send(sample).await.is_err() {
                return false;
            }
        }
        true
    }
}

/// The task that owns one bus.
pub struct Scheduler<P: Protocol> {
    protocol: P,
    devices: Vec<ScheduledDevice<P::Plan>>,
    /// Each device's index by when it is due, soonest first (ties: in config order). Looking
    /// through every device's state for the next one touched a cache line per device per poll.
    queue: BinaryHeap<Reverse<(Instant, usize)>>,
    handing: Handing,
    status: Arc<StatusBoard>,
}

impl<P: Protocol> Scheduler<P> {
    /// The task for `bus` with the devices the config puts on it, each planned by `plan` (a
    /// device it gives no plan for is left out).
    pub fn new(
        config: &LoadedConfig,
        bus: &BusConfig,
        protocol: P,
        mut plan: impl FnMut(&DeviceConfig, &Profile) -> Option<P::Plan>,
        (samples, status): (mpsc::Sender<Sample>, Arc<StatusBoard>),
    ) -> Self {
        let max_backoff = bus.max_backoff.get();
        let devices: Vec<ScheduledDevice<P::Plan>> = config
            .gateway
            .device
            .iter()
            .filter(|d| d.bus == bus.id)
            .filter_map(|device| {
                let profile = config.profile_of(device)?;
                let plan = plan(device, profile)?;
                Some(ScheduledDevice::new(
                    config,
                    device,
                    &profile.kind,
                    plan,
                    max_backoff,
                ))
            })
            .collect();
        for device in &devices {
            status.update(&device.id, |s| s.bus = bus.id.clone());
        }
        let queue = devices
            .iter()
            .enumerate()
            .map(|(index, device)| Reverse((device.due_at(), index)))
            .collect();
        Scheduler {
            protocol,
            devices,
            queue,
            handing: Handing {
                samples,
                held: Vec::new(),
                since: Instant::now(),
            },
            status,
        }
    }

    /// Polls until `shutdown` turns true (or its sender is gone).
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        if self.devices.is_empty() {
            return;
        }
        loop {
            if *shutdown.borrow() {
                self.handing.hand_on().await;
                return;
            }
            let Some(&Reverse((due, index))) = self.queue.peek() else {
                return;
            };
            if due > Instant::now() && !self.handing.hand_on().await {
                return;
            }
            tokio::select! {
                _ = super::wait_until(due) => {}
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        self.handing.hand_on().await;
                        return;
                    }
                    continue;
                }
            }
            self.queue.pop();
            let more = self.poll(index).await;
            self.queue
                .push(Reverse((self.devices[index].due_at(), index)));
            if !more {
                return;
            }
        }
    }

    /// Polls one device once and holds its sample, handing on what is held when it is overdue;
    /// false when the sample channel is closed.
    async fn poll(&mut self, index: usize) -> bool {
        let device = &mut self.devices[index];
        let outcome = self
            .protocol
            .poll(&mut device.plan, &device.id, device.cycle)
            .await;
        let device = &self.devices[index];
        let produced = !outcome.fields.is_empty();
        let answered = outcome.answered_at.is_some();
        let clean = answered
            && outcome.refusals == 0
            && outcome.decode_errors == 0
            && outcome.link_failure.is_none();
        let sample = outcome.answered_at.filter(|_| produced).map(|at| Sample {
            measurement: Arc::clone(&device.measurement),
            device: Arc::clone(&device.id),
            tags: Arc::clone(&device.tags),
            fields: outcome.fields,
            time_ns: unix_nanos(at),
            receipt: crate::model::Receipt::none(),
        });
        let timeout = outcome.link_failure.as_ref().map(|f| f.timeout);
        let (state, skipped) = self.settle(index, answered, clean, outcome.link_failure);
        // One update per poll: the board is shared, and each lookup is a cache miss or more.
        self.status.update(&self.devices[index].id, |s| {
            s.transactions += outcome.transactions;
            s.exceptions += outcome.refusals;
            s.decode_errors += outcome.decode_errors;
            match timeout {
                Some(true) => s.timeouts += 1,
                Some(false) => s.link_errors += 1,
                None => {}
            }
            s.samples += u64::from(produced);
            s.state = state;
            s.skipped_polls += skipped;
        });
        if let Some(sample) = sample {
            self.handing.hold(sample);
        }
        !self.handing.overdue() || self.handing.hand_on().await
    }

    /// Updates the device's state and schedules its next poll; returns the device's state and
    /// the polls skipped because they were a whole interval late.
    fn settle(
        &mut self,
        index: usize,
        answered: bool,
        clean: bool,
        failure: Option<LinkFailure>,
    ) -> (CommState, u64) {
        let now = Instant::now();
        let device = &mut self.devices[index];
        let was_offline = device.probe_at.is_some();
        let state = if answered {
            device.failures_in_a_row = 0;
            device.backoff.reset();
            device.probe_at = None;
            if was_offline {
                tracing::info!(device = %device.id, "Device answers again");
                // Resume on the device's own rhythm from now.
                device.next_due = now;
            }
            if clean {
                CommState::Online
            } else {
                CommState::Degraded
            }
        } else {
            device.failures_in_a_row += 1;
            if device.failures_in_a_row >= OFFLINE_AFTER {
                let pause = device.backoff.next_delay();
                if !was_offline {
                    tracing::warn!(
                        device = %device.id,
                        error = %failure.map(|f| f.reason).unwrap_or_default(),
                        probe_in = ?pause,
                        "Device stopped answering; probing with backoff"
                    );
                }
                device.probe_at = Some(now + pause);
                CommState::Offline
            } else {
                CommState::Degraded
            }
        };
        let mut skipped = 0;
        if device.probe_at.is_none() {
            device.cycle += 1;
            device.next_due += device.interval;
            if device.next_due + device.interval <= now {
                let late = now.duration_since(device.next_due);
                let missed = (late.as_nanos() / device.interval.as_nanos().max(1)) as u32;
                device.next_due += device.interval * missed;
                device.cycle += u64::from(missed);
                skipped = u64::from(missed);
            }
        }
        (state, skipped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{load, EnvOverlay};
    use crate::model::Value;

    /// Devices that answer after `answer` with the bus's poll count so far.
    struct Slow {
        answer: Duration,
        polled: Arc<std::sync::Mutex<Vec<Instant>>>,
    }

    impl Protocol for Slow {
        type Plan = ();

        async fn poll(&mut self, _: &mut (), _: &str, _: u64) -> PollOutcome {
            tokio::time::sleep(self.answer).await;
            let mut polled = self.polled.lock().expect("polled");
            polled.push(Instant::now());
            PollOutcome {
                fields: vec![Field {
                    name: Arc::from("n"),
                    value: Value::UInt(polled.len() as u64 - 1),
                }],
                answered_at: Some(SystemTime::now()),
                transactions: 1,
                ..PollOutcome::default()
            }
        }
    }

    /// A bus of `devices` polled every `interval`, each answering after `answer`; returns, per
    /// sample in arrival order, when its poll ended and when it was handed on.
    async fn hand_on_times(
        devices: usize,
        interval: &str,
        answer: Duration,
        run_for: Duration,
    ) -> Vec<(Instant, Instant)> {
        let dir = tempfile::tempdir().expect("dir");
        std::fs::create_dir_all(dir.path().join("profiles")).expect("profiles");
        std::fs::write(
            dir.path().join("profiles/meter.toml"),
            "kind = \"power_meter\"\n[[point]]\nname = \"n\"\nfc = 3\naddress = 0\ntype = \"u16\"\n",
        )
        .expect("profile");
        let mut text = format!(
            "[gateway]\nid = \"g\"\nsite = \"s\"\ndata_dir = {:?}\n\
             [[bus]]\nid = \"b\"\ntransport = \"tcp\"\naddress = \"127.0.0.1:1\"\n",
            dir.path().join("data")
        );
        for n in 0..devices {
            text += &format!(
                "[[device]]\nid = \"m{n}\"\nbus = \"b\"\nunit = {}\nprofile = \"meter\"\ninterval = \"{interval}\"\n",
                n + 1
            );
        }
        text += "[outputs.line_protocol]\npath = \"/dev/null\"\n";
        std::fs::write(dir.path().join("gateway.toml"), text).expect("config");
        let config = load(&dir.path().join("gateway.toml"), EnvOverlay::None)
            .unwrap_or_else(|e| panic!("{e}"));
        let polled = Arc::new(std::sync::Mutex::new(Vec::new()));
        let protocol = Slow {
            answer,
            polled: Arc::clone(&polled),
        };
        let (tx, mut rx) = mpsc::channel(1024);
        let status = Arc::new(StatusBoard::default());
        let scheduler = Scheduler::new(
            &config,
            &config.gateway.bus[0],
            protocol,
            |_, _| Some(()),
            (tx, status),
        );
        let (stop, shutdown) = watch::channel(false);
        let task = tokio::spawn(scheduler.run(shutdown));
        let mut arrivals = Vec::new();
        let end = Instant::now() + run_for;
        while let Ok(Some(sample)) = tokio::time::timeout_at(end, rx.recv()).await {
            let Value::UInt(n) = sample.fields[0].value else {
                panic!("field");
            };
            arrivals.push((n as usize, Instant::now()));
        }
        stop.send(true).expect("stop");
        task.await.expect("scheduler");
        let polled = polled.lock().expect("polled");
        arrivals
            .into_iter()
            .map(|(n, handed)| (polled[n], handed))
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn a_bus_that_never_idles_hands_its_samples_on_in_groups_within_the_limit() {
        // Ten devices due every 100 ms, each answering after 40 ms: the bus never waits.
        let answer = Duration::from_millis(40);
        let times = hand_on_times(10, "100ms", answer, Duration::from_secs(5)).await;
        assert!(times.len() > 100, "{} samples", times.len());
        for (polled, handed) in &times {
            assert!(
                handed.duration_since(*polled) <= HAND_ON_AFTER + answer,
                "a sample waited {:?}",
                handed.duration_since(*polled)
            );
        }
        let handings: std::collections::BTreeSet<Instant> =
            times.iter().map(|(_, handed)| *handed).collect();
        assert!(
            handings.len() * 3 <= times.len(),
            "{} handings for {} samples",
            handings.len(),
            times.len()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_round_is_handed_on_before_the_bus_waits_for_the_next() {
        // Three devices due every second, answering after 20 ms: each round takes 60 ms.
        let times = hand_on_times(
            3,
            "1s",
            Duration::from_millis(20),
            Duration::from_millis(3500),
        )
        .await;
        assert_eq!(times.len(), 12);
        for round in times.chunks(3) {
            let last_poll = round[2].0;
            assert!(
                round.iter().all(|(_, handed)| *handed == last_poll),
                "{round:?}"
            );
        }
    }
}
