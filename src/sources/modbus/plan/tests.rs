//! The exact plan for a profile with gaps, overlapping bit points and mixed intervals.

use super::*;
use crate::config::{ConfigDuration, DeviceConfig, Profile};

fn profile(text: &str) -> Profile {
    config::Config::builder()
        .add_source(config::File::from_str(text, config::FileFormat::Toml))
        .build()
        .and_then(|c| c.try_deserialize())
        .expect("test profile parses")
}

fn device(interval_ms: u64) -> DeviceConfig {
    DeviceConfig {
        id: "dev".into(),
        name: None,
        upstream: None,
        bus: "bus".into(),
        unit: Some(1),
        meter_address: None,
        profile: "p".into(),
        interval: ConfigDuration::from_millis(interval_ms),
        tags: Default::default(),
        address_offset: None,
        ct_ratio: 1.0,
        pt_ratio: 1.0,
        site: None,
    }
}

const LIMITS: PlanLimits = PlanLimits {
    max_registers: 125,
    max_gap: 8,
};

const GAPPY: &str = r#"
kind = "test"
[[point]]
name = "a"
fc = 3
address = 0
type = "f32"
[[point]]
name = "b"
fc = 3
address = 2
type = "f32"
[[point]]
name = "c"
fc = 3
address = 10
type = "u16"
[[point]]
name = "run_bit0"
fc = 3
address = 11
type = "bit"
bit = 0
[[point]]
name = "run_bit3"
fc = 3
address = 11
type = "bit"
bit = 3
[[point]]
name = "slow_near"
fc = 3
address = 12
type = "u16"
interval = "10s"
[[point]]
name = "slow_far"
fc = 3
address = 40
type = "u32"
interval = "10s"
[[point]]
name = "input"
fc = 4
address = 0
type = "u16"
[[point]]
name = "coil_low"
fc = 1
address = 5
type = "bool"
[[point]]
name = "coil_high"
fc = 1
address = 100
type = "bool"
"#;

fn shape(plan: &DevicePlan, requests: &[ReadRequest]) -> Vec<(u8, u16, u16, Vec<String>)> {
    requests
        .iter()
        .map(|r| {
            let names = r
                .points
                .iter()
                .map(|i| plan.points[*i].name.to_string())
                .collect();
            (r.function.code(), r.start, r.count, names)
        })
        .collect()
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[test]
fn plans_gaps_bits_and_slow_points_exactly() {
    let mut plan = DevicePlan::new(&device(1000), &profile(GAPPY), LIMITS);
    assert_eq!(plan.period, 10);

    let first = plan.requests(0);
    assert_eq!(
        shape(&plan, &first),
        vec![
            // 95 unused bits between the coils is within max_gap × 16 = 128 bits.
            (1, 5, 96, names(&["coil_low", "coil_high"])),
            // 6 unused registers (4..10) bridged; the slow point at 12 joins when due.
            (
                3,
                0,
                13,
                names(&["a", "b", "c", "run_bit0", "run_bit3", "slow_near"])
            ),
            // 27 unused registers (13..40) exceed max_gap: a read of its own.
            (3, 40, 2, names(&["slow_far"])),
            (4, 0, 1, names(&["input"])),
        ]
    );

    let other = plan.requests(1);
    assert_eq!(
        shape(&plan, &other),
        vec![
            (1, 5, 96, names(&["coil_low", "coil_high"])),
            (3, 0, 12, names(&["a", "b", "c", "run_bit0", "run_bit3"])),
            (4, 0, 1, names(&["input"])),
        ]
    );
    // Cycle 10 repeats cycle 0.
    assert_eq!(plan.requests(10), first);

    let shapes = plan.cycle_shapes(1000);
    let counts: Vec<(u64, usize)> = shapes.iter().map(|(n, r)| (*n, r.len())).collect();
    assert_eq!(counts, vec![(1, 4), (9, 3)]);
}

#[test]
fn a_read_never_exceeds_the_register_limit() {
    let mut text = String::from("kind = \"test\"\n");
    for i in 0..70 {
        text.push_str(&format!(
            "[[point]]\nname = \"p{i}\"\nfc = 3\naddress = {}\ntype = \"f32\"\n",
            i * 2
        ));
    }
    let mut plan = DevicePlan::new(&device(1000), &profile(&text), LIMITS);
    let requests = plan.requests(0);
    let spans: Vec<(u16, u16)> = requests.iter().map(|r| (r.start, r.count)).collect();
    assert_eq!(spans, vec![(0, 124), (124, 16)]);

    let small = PlanLimits {
        max_registers: 10,
        max_gap: 8,
    };
    let mut plan = DevicePlan::new(&device(1000), &profile(&text), small);
    assert!(plan.requests(0).iter().all(|r| r.count <= 10));
    assert_eq!(plan.requests(0).len(), 14);
}

#[test]
fn zero_gap_splits_at_every_hole_and_offsets_shift_addresses() {
    let limits = PlanLimits {
        max_registers: 125,
        max_gap: 0,
    };
    let mut dev = device(1000);
    dev.address_offset = Some(1);
    let mut plan = DevicePlan::new(&dev, &profile(GAPPY), limits);
    let spans: Vec<(u8, u16, u16)> = plan
        .requests(1)
        .iter()
        .map(|r| (r.function.code(), r.start, r.count))
        .collect();
    assert_eq!(
        spans,
        vec![(1, 6, 1), (1, 101, 1), (3, 1, 4), (3, 11, 2), (4, 1, 1)]
    );
}

mod properties {
    use super::*;
    use crate::config::{PointConfig, PointType, WordOrder};
    use proptest::prelude::*;

    fn point_strategy() -> impl Strategy<Value = PlannedPoint> {
        let types = prop_oneof![
            Just(PointType::U16),
            Just(PointType::U32),
            Just(PointType::F64),
            Just(PointType::Bit),
            Just(PointType::Bool),
        ];
        (types, 0u16..2000, 1u32..4, any::<bool>()).prop_map(|(kind, address, every, input)| {
            let fc = match (kind, input) {
                (PointType::Bool, false) => 1,
                (PointType::Bool, true) => 2,
                (_, false) => 3,
                (_, true) => 4,
            };
            let config = PointConfig {
                name: "p".into(),
                unit: None,
                label: None,
                fc,
                address,
                kind,
                order: WordOrder::ABCD,
                bit: (kind == PointType::Bit).then_some(3),
                length: None,
                scale: 1.0,
                offset: 0.0,
                ratio: None,
                interval: None,
            };
            PlannedPoint {
                name: "p".into(),
                function: Function::from_code(fc).unwrap_or(Function::ReadHoldingRegisters),
                address,
                width: kind.width(None),
                every,
                decoder: PointDecoder::new(&config, 1.0, 1.0),
            }
        })
    }

    proptest! {
        #[test]
        fn every_due_point_is_read_once_within_protocol_limits(
            points in prop::collection::vec(point_strategy(), 1..60),
            max_registers in 4u16..=125,
            max_gap in 0u16..20,
            cycle in 0u64..12,
        ) {
            let limits = PlanLimits { max_registers, max_gap };
            let due: Vec<usize> = (0..points.len())
                .filter(|i| cycle % u64::from(points[*i].every) == 0)
                .collect();
            let requests = coalesce(&points, &due, limits, &[]);
            let mut served: Vec<usize> = requests.iter().flat_map(|r| r.points.clone()).collect();
            served.sort_unstable();
            prop_assert_eq!(&served, &due);
            for r in &requests {
                let limit = if r.function.reads_bits() { 2000 } else { max_registers };
                // Validation refuses points wider than max_registers, so 4 is the floor here.
                prop_assert!(r.count >= 1 && r.count <= limit, "{:?}", r);
                for &p in &r.points {
                    let point = &points[p];
                    prop_assert_eq!(point.function, r.function);
                    prop_assert!(point.address >= r.start);
                    prop_assert!(u32::from(point.address) + u32::from(point.width)
                        <= u32::from(r.start) + u32::from(r.count));
                }
            }
        }

        #[test]
        fn decoding_arbitrary_replies_never_panics(
            point in point_strategy(),
            words in prop::collection::vec(any::<u16>(), 0..8),
            at in 0usize..10,
        ) {
            let _ = point.decoder.decode_words(&words, at);
            let bits: Vec<bool> = words.iter().map(|w| w & 1 == 1).collect();
            let _ = point.decoder.decode_bits(&bits, at);
        }
    }
}

#[test]
fn a_refused_read_splits_at_its_widest_gap_and_bit_points_stay_together() {
    let mut plan = DevicePlan::new(&device(1000), &profile(GAPPY), LIMITS);
    let first = plan.requests(0);
    let read = first
        .iter()
        .find(|r| r.function.code() == 3 && r.start == 0)
        .expect("the read of a..slow_near");
    let (left, right) = crate::sources::modbus::adapt::split(&plan.points, read).expect("splits");
    // The widest gap is 4..10, between b and c.
    assert_eq!(
        shape(&plan, &[left.clone(), right.clone()]),
        vec![
            (3, 0, 4, names(&["a", "b"])),
            (3, 10, 3, names(&["c", "run_bit0", "run_bit3", "slow_near"])),
        ]
    );
    // Two bits of one register cannot be split from each other; a single point neither.
    let bits = ReadRequest {
        function: right.function,
        start: 11,
        count: 1,
        points: right.points[1..3].to_vec(),
    };
    assert!(crate::sources::modbus::adapt::split(&plan.points, &bits).is_none());
    let (_, touching) = crate::sources::modbus::adapt::split(&plan.points, &right).expect("splits");
    assert!(crate::sources::modbus::adapt::split(&plan.points, &touching).is_some());
}

#[test]
fn what_a_device_refused_keeps_later_plans_off_it() {
    let mut plan = DevicePlan::new(&device(1000), &profile(GAPPY), LIMITS);
    let first = plan.requests(0);
    let read = first
        .iter()
        .find(|r| r.function.code() == 3 && r.start == 0)
        .expect("the read of a..slow_near")
        .clone();
    let (left, right) = crate::sources::modbus::adapt::split(&plan.points, &read).expect("splits");
    plan.lessons.bar_between(&left, &right);
    let slow_far = first
        .iter()
        .find(|r| r.start == 40)
        .expect("slow_far's read")
        .clone();
    plan.lessons.refuse(&slow_far);
    plan.replan();
    let replanned = plan.requests(0);
    assert_eq!(
        shape(&plan, &replanned),
        vec![
            (1, 5, 96, names(&["coil_low", "coil_high"])),
            (3, 0, 4, names(&["a", "b"])),
            (3, 10, 3, names(&["c", "run_bit0", "run_bit3", "slow_near"])),
            (4, 0, 1, names(&["input"])),
        ]
    );
    let summary = plan
        .lessons
        .summary(&plan.points)
        .expect("something avoided");
    assert!(summary.contains("读取避开寄存器 4–9"), "{summary}");
    assert!(summary.contains("slow_far（寄存器 40）"), "{summary}");
    // Reported once: the same lessons learned again (after a re-probe) are not news.
    assert!(plan.lessons.news(&plan.points).is_some());
    plan.lessons.refuse(&slow_far);
    assert!(plan.lessons.news(&plan.points).is_none());
}

#[test]
fn a_boundary_barrier_only_stops_reads_that_span_it() {
    use crate::sources::modbus::adapt::Barrier;
    let boundary = Barrier {
        function: Function::ReadHoldingRegisters,
        start: 10,
        end: 10,
    };
    assert!(boundary.blocks(Function::ReadHoldingRegisters, 8, 12));
    assert!(!boundary.blocks(Function::ReadHoldingRegisters, 8, 10));
    assert!(!boundary.blocks(Function::ReadHoldingRegisters, 10, 12));
    assert!(!boundary.blocks(Function::ReadInputRegisters, 8, 12));
    let hole = Barrier {
        end: 12,
        ..boundary
    };
    assert!(hole.blocks(Function::ReadHoldingRegisters, 11, 13));
    assert!(!hole.blocks(Function::ReadHoldingRegisters, 12, 14));
}

#[tokio::test(start_paused = true)]
async fn lessons_are_forgotten_after_the_reprobe_time() {
    use crate::sources::modbus::adapt::REPROBE_AFTER;
    let mut plan = DevicePlan::new(&device(1000), &profile(GAPPY), LIMITS);
    let slow_far = plan
        .requests(0)
        .iter()
        .find(|r| r.start == 40)
        .expect("slow_far's read")
        .clone();
    plan.lessons.refuse(&slow_far);
    tokio::time::advance(REPROBE_AFTER - std::time::Duration::from_secs(1)).await;
    assert!(!plan.lessons.expire(tokio::time::Instant::now()));
    tokio::time::advance(std::time::Duration::from_secs(1)).await;
    assert!(plan.lessons.expire(tokio::time::Instant::now()));
    assert!(plan.lessons.is_empty());
}
