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
        bus: "bus".into(),
        unit: 1,
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
