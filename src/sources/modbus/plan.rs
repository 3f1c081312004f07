//! The read planner: which Modbus requests one poll cycle of a device issues.
//!
//! A device is polled every `interval`; each point every `every` cycles (its own interval divided
//! by the device's, a whole number by validation). In cycle `k` the points with `k % every == 0`
//! are due. The due points of one function code are sorted by address and coalesced greedily into
//! as few reads as possible: a point joins the current read if the unused registers between them
//! are at most `max_gap` and the read stays within `max_registers` (125 by protocol; 2000 bits
//! and `max_gap × 16` bits for coils and discrete inputs). Overlapping points (bits of one status
//! word) share registers. The plan for each distinct set of due intervals is computed once.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::config::{BusConfig, DeviceConfig, Function, Profile};

use super::adapt::{Barrier, Lessons};
use super::decode::PointDecoder;

/// A point as the poller sees it.
#[derive(Debug, Clone)]
pub struct PlannedPoint {
    pub name: Arc<str>,
    pub function: Function,
    /// Wire address after the device's address offset.
    pub address: u16,
    /// Registers (or bits) it occupies.
    pub width: u16,
    /// Polled every `every` device cycles.
    pub every: u32,
    pub decoder: PointDecoder,
}

/// One read request of a poll cycle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadRequest {
    pub function: Function,
    pub start: u16,
    pub count: u16,
    /// Indices of the points this read serves, into [`DevicePlan::points`].
    pub points: Vec<usize>,
}

/// Limits the planner works within.
#[derive(Debug, Clone, Copy)]
pub struct PlanLimits {
    pub max_registers: u16,
    pub max_gap: u16,
}

impl PlanLimits {
    pub fn of(bus: &BusConfig) -> Self {
        PlanLimits {
            max_registers: bus.max_registers,
            max_gap: bus.max_gap,
        }
    }

    fn for_function(self, function: Function) -> (u32, u32) {
        if function.reads_bits() {
            (
                u32::from(function.max_quantity()),
                u32::from(self.max_gap) * 16,
            )
        } else {
            (
                u32::from(self.max_registers.min(function.max_quantity())),
                u32::from(self.max_gap),
            )
        }
    }
}

/// Everything needed to poll one device.
#[derive(Debug)]
pub struct DevicePlan {
    /// Shared by the devices of a bus that read alike ([`SharedPoints`]).
    pub points: Arc<[PlannedPoint]>,
    /// Cycles after which the due pattern repeats (lcm of the points' `every`).
    pub period: u64,
    limits: PlanLimits,
    cache: HashMap<Vec<u32>, Arc<[ReadRequest]>>,
    /// The requests of each cycle of the period, once planned (periods up to [`MAX_PHASES`]).
    by_phase: Vec<Option<Arc<[ReadRequest]>>>,
    /// What the device's refusals taught: registers to avoid, points to skip.
    pub lessons: Lessons,
}

/// The longest period whose cycles [`DevicePlan::requests`] remembers one by one (a slot each
/// per device; longer periods look their pattern up).
const MAX_PHASES: u64 = 64;

/// What makes two devices' points alike: their profile, address offset, interval and the CT
/// and PT ratios folded into the decoders.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Alike {
    profile: String,
    offset: i32,
    interval_ms: u128,
    ratios: (u64, u64),
}

/// The points of the devices planned so far, one copy per kind of device: a bus of a hundred
/// identical meters holds one list of forty points, not a hundred.
#[derive(Default)]
pub struct SharedPoints(HashMap<Alike, Arc<[PlannedPoint]>>);

impl SharedPoints {
    /// The plan of a validated device, its points shared with any device planned alike.
    pub fn plan(
        &mut self,
        device: &DeviceConfig,
        profile: &Profile,
        limits: PlanLimits,
    ) -> DevicePlan {
        let alike = Alike {
            profile: device.profile.clone(),
            offset: device.address_offset.unwrap_or(profile.address_offset),
            interval_ms: device.interval.get().as_millis(),
            ratios: (device.ct_ratio.to_bits(), device.pt_ratio.to_bits()),
        };
        let points = self
            .0
            .entry(alike)
            .or_insert_with(|| planned_points(device, profile).into());
        DevicePlan::sharing(Arc::clone(points), limits)
    }
}

/// A validated device's points as the poller sees them.
fn planned_points(device: &DeviceConfig, profile: &Profile) -> Vec<PlannedPoint> {
    let offset = device.address_offset.unwrap_or(profile.address_offset);
    let interval = device.interval.get().as_millis().max(1);
    profile
        .points
        .iter()
        .filter_map(|p| {
            let function = Function::from_code(p.fc)?;
            let address = u16::try_from(i64::from(p.address) + i64::from(offset)).ok()?;
            let every = p
                .interval
                .map(|i| (i.get().as_millis() / interval).max(1))
                .unwrap_or(1);
            Some(PlannedPoint {
                name: Arc::from(p.name.as_str()),
                function,
                address,
                width: p.kind.width(p.length),
                every: u32::try_from(every).unwrap_or(u32::MAX),
                decoder: PointDecoder::new(p, device.ct_ratio, device.pt_ratio),
            })
        })
        .collect()
}

impl DevicePlan {
    /// Builds the plan of a validated device.
    pub fn new(device: &DeviceConfig, profile: &Profile, limits: PlanLimits) -> Self {
        DevicePlan::sharing(planned_points(device, profile).into(), limits)
    }

    /// A plan over `points`.
    fn sharing(points: Arc<[PlannedPoint]>, limits: PlanLimits) -> Self {
        let period = points
            .iter()
            .fold(1u64, |acc, p| lcm(acc, u64::from(p.every)));
        DevicePlan {
            points,
            period,
            limits,
            cache: HashMap::new(),
            by_phase: Vec::new(),
            lessons: Lessons::default(),
        }
    }

    /// Plans afresh from the next cycle on, after the lessons changed.
    pub fn replan(&mut self) {
        self.cache.clear();
        self.by_phase.clear();
    }

    /// The distinct `every` values due in cycle `cycle`, ascending.
    fn due_pattern(&self, cycle: u64) -> Vec<u32> {
        let mut due: Vec<u32> = self
            .points
            .iter()
            .map(|p| p.every)
            .filter(|every| cycle.is_multiple_of(u64::from(*every)))
            .collect();
        due.sort_unstable();
        due.dedup();
        due
    }

    /// The requests of cycle `cycle` (cycle 0 polls every point).
    pub fn requests(&mut self, cycle: u64) -> Arc<[ReadRequest]> {
        // Looked up by the cycle's place in the period first: the due pattern costs an
        // allocation and a sort at every poll.
        let phase = usize::try_from(cycle % self.period).unwrap_or(usize::MAX);
        if let Some(Some(found)) = self.by_phase.get(phase) {
            return Arc::clone(found);
        }
        let planned = self.requests_due(cycle);
        if self.period <= MAX_PHASES {
            if self.by_phase.is_empty() {
                self.by_phase = vec![None; self.period as usize];
            }
            self.by_phase[phase] = Some(Arc::clone(&planned));
        }
        planned
    }

    /// The requests of cycle `cycle`, from its due pattern.
    fn requests_due(&mut self, cycle: u64) -> Arc<[ReadRequest]> {
        let pattern = self.due_pattern(cycle);
        if let Some(found) = self.cache.get(&pattern) {
            return Arc::clone(found);
        }
        let due: Vec<usize> = (0..self.points.len())
            .filter(|i| pattern.contains(&self.points[*i].every))
            .filter(|i| !self.lessons.refused.contains(i))
            .collect();
        let barriers: Vec<Barrier> = self.lessons.barriers.iter().copied().collect();
        let planned: Arc<[ReadRequest]> =
            coalesce(&self.points, &due, self.limits, &barriers).into();
        self.cache.insert(pattern, Arc::clone(&planned));
        planned
    }

    /// Every distinct cycle shape within one period, with how many cycles of the period have it,
    /// in order of first appearance. Periods longer than `max_cycles` are sampled up to it.
    pub fn cycle_shapes(&mut self, max_cycles: u64) -> Vec<(u64, Arc<[ReadRequest]>)> {
        let mut shapes: Vec<(Vec<u32>, u64)> = Vec::new();
        for cycle in 0..self.period.min(max_cycles) {
            let pattern = self.due_pattern(cycle);
            match shapes.iter_mut().find(|(p, _)| *p == pattern) {
                Some((_, count)) => *count += 1,
                None => shapes.push((pattern, 1)),
            }
        }
        let firsts: Vec<(u64, u64)> = shapes
            .iter()
            .map(|(pattern, count)| {
                let first = (0..self.period)
                    .find(|c| self.due_pattern(*c) == *pattern)
                    .unwrap_or(0);
                (first, *count)
            })
            .collect();
        firsts
            .into_iter()
            .map(|(first, count)| (count, self.requests(first)))
            .collect()
    }
}

/// Greedy coalescing of the due points into reads; no read that joins points spans a barrier.
pub fn coalesce(
    points: &[PlannedPoint],
    due: &[usize],
    limits: PlanLimits,
    barriers: &[Barrier],
) -> Vec<ReadRequest> {
    let mut by_function: BTreeMap<Function, Vec<usize>> = BTreeMap::new();
    for &i in due {
        by_function.entry(points[i].function).or_default().push(i);
    }
    let mut requests = Vec::new();
    for (function, mut members) in by_function {
        members.sort_by_key(|&i| (points[i].address, points[i].width));
        let (max_count, max_gap) = limits.for_function(function);
        let mut current: Option<(u32, u32, Vec<usize>)> = None;
        for i in members {
            let start = u32::from(points[i].address);
            let end = start + u32::from(points[i].width);
            current = match current.take() {
                Some((req_start, req_end, mut served))
                    if start <= req_end + max_gap
                        && end.max(req_end) - req_start <= max_count
                        && !barriers
                            .iter()
                            .any(|b| b.blocks(function, req_start, end.max(req_end))) =>
                {
                    served.push(i);
                    Some((req_start, end.max(req_end), served))
                }
                Some(done) => {
                    requests.push(request(function, done));
                    Some((start, end, vec![i]))
                }
                None => Some((start, end, vec![i])),
            };
        }
        if let Some(done) = current {
            requests.push(request(function, done));
        }
    }
    requests
}

fn request(function: Function, (start, end, points): (u32, u32, Vec<usize>)) -> ReadRequest {
    ReadRequest {
        function,
        start: u16::try_from(start).unwrap_or(u16::MAX),
        count: u16::try_from(end - start).unwrap_or(u16::MAX),
        points,
    }
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

fn lcm(a: u64, b: u64) -> u64 {
    (a / gcd(a, b)).saturating_mul(b)
}

#[cfg(test)]
mod tests;
