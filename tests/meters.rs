//! Meters over transparent TCP serial servers.
//!
//! - The codec and link alone: the simulated DL/T 645 stairwell answers the gateway's read
//!   frames with the values the simulator holds, single-phase meters refuse phases B and C with
//!   "no data", and each injected line fault shows as what it is: silence as a timeout, an error
//!   reply as the meter's error byte, a bad checksum and garbled bytes as refused replies.
//! - The gateway's bus scheduler: silent, garbled and damaged meters go offline without
//!   changing the sample rate of the healthy meters on their line (that every meter's values
//!   equal the simulator's is shown, with every other device, in `tests/acquisition.rs`).
//! - The rules on what the meters send over the wire: a voltage sag raises E1 on the household
//!   meters, a low battery raises E16 on a DL/T 645 meter and H8 on the M-Bus meter, a bypass
//!   raises H7 on a CJ/T 188 heat meter; nothing is raised on the others.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{count_by_device, example_site, Site};
use retrofit_gateway::config::ConfigDuration;
use retrofit_gateway::demo::shorten_holds;
use retrofit_gateway::model::unix_nanos;
use retrofit_gateway::rules::engine::RuleEngine;
use retrofit_gateway::sources::modbus::status::CommState;

use retrofit_gateway::sources::meters::link::{transact, TransactionError};
use retrofit_gateway::sources::meters::{dlt645, FrameError};
use retrofit_sim::faults::{Fault, FaultKind};
use retrofit_sim::layout::Layout;
use retrofit_sim::meters::{stairwell, HouseholdMeter, NO_DATA};
use retrofit_sim::{Community, SimOptions};
use tokio::net::TcpStream;

const TIMEOUT: Duration = Duration::from_millis(500);

async fn read(
    line: &mut TcpStream,
    meter: &HouseholdMeter,
    di: u32,
) -> Result<f64, TransactionError> {
    let request = dlt645::read_request(meter.address, di);
    let frame = transact(line, &request, dlt645::decode, TIMEOUT).await?;
    assert_eq!(frame.address, meter.address, "answered by another meter");
    dlt645::reply_value(&frame, dlt645::data_id(di).expect("a known DI"))
        .map_err(TransactionError::Frame)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stairwell_answers_with_the_simulators_values_and_its_faults_show_as_what_they_are() {
    let layout = Layout::example_site(std::net::IpAddr::from([127, 0, 0, 1]), 0);
    let community = Community::start(&layout, SimOptions::default())
        .await
        .expect("community starts");
    let meters = stairwell(6);
    let address = community.address("stairwell").expect("the stairwell line");
    community.set_frozen(true);
    let mut line = TcpStream::connect(address).await.expect("serial server");

    for meter in &meters {
        for di in [
            0x0201_0100,
            0x0202_0100,
            0x0203_0000,
            0x0206_0000,
            0x0280_0002,
            0x0001_0000,
        ] {
            let expected = community.meter_value(meter, di).expect("the meter has it");
            let got = read(&mut line, meter, di).await.expect("a value");
            assert!(
                (got - expected).abs() < 1e-9,
                "{} DI {di:08X}: {got} ≠ {expected}",
                meter.id
            );
        }
        // Single-phase: no phase B.
        match read(&mut line, meter, 0x0201_0200).await {
            Err(TransactionError::Frame(FrameError::MeterError(code))) => assert_eq!(code, NO_DATA),
            other => panic!("{}: phase B gave {other:?}", meter.id),
        }
    }

    let faults = [
        (FaultKind::Silent, "meter-02"),
        (FaultKind::Exception, "meter-03"),
        (FaultKind::BadChecksum, "meter-04"),
        (FaultKind::Garbled, "meter-05"),
    ];
    for (kind, id) in faults {
        community.inject(Fault::on(kind, id));
    }
    let ua = 0x0201_0100;
    let outcome = |id: &str| meters.iter().find(|m| m.id == id).expect("meter").clone();
    assert!(matches!(
        read(&mut line, &outcome("meter-02"), ua).await,
        Err(TransactionError::Timeout(_))
    ));
    assert!(matches!(
        read(&mut line, &outcome("meter-03"), ua).await,
        Err(TransactionError::Frame(FrameError::MeterError(0x04)))
    ));
    assert!(matches!(
        read(&mut line, &outcome("meter-04"), ua).await,
        Err(TransactionError::Frame(FrameError::Checksum { .. }))
    ));
    // Noise without a start byte: nothing decodes before the timeout.
    assert!(matches!(
        read(&mut line, &outcome("meter-05"), ua).await,
        Err(TransactionError::Timeout(_))
    ));
    // The healthy meters on the same line still answer, and so do the others once cleared.
    assert!(read(&mut line, &outcome("meter-01"), ua).await.is_ok());
    assert!(read(&mut line, &outcome("meter-06"), ua).await.is_ok());
    for (kind, id) in faults {
        community.clear(&Fault::on(kind, id));
        assert!(
            read(&mut line, &outcome(id), ua).await.is_ok(),
            "{id} after clearing"
        );
    }
}

/// The example site with only its meters, polled every `stairwell` and `heat` interval.
async fn meter_site(stairwell: u64, heat: u64) -> Site {
    let mut site = example_site().await;
    let config = &mut site.config.gateway;
    config
        .device
        .retain(|d| d.bus == "stairwell" || d.bus == "heat-meters");
    for device in &mut config.device {
        let every = if device.bus == "stairwell" {
            stairwell
        } else {
            heat
        };
        device.interval = ConfigDuration::from_millis(every);
    }
    site
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_meter_does_not_slow_the_others_on_its_line() {
    let site = meter_site(5_000, 3_000).await;
    // Each poll of these costs the line a 1 s timeout (or a refused frame) until they are
    // offline and only probed with backoff.
    let faults = [
        (FaultKind::Silent, "meter-03"),
        (FaultKind::Garbled, "meter-05"),
        (FaultKind::Silent, "heat-05"),
        (FaultKind::BadChecksum, "heat-primary"),
    ];
    for (kind, id) in faults {
        site.community.inject(Fault::on(kind, id));
    }
    let faulty: BTreeSet<&str> = faults.iter().map(|(_, id)| *id).collect();
    let all = site.device_ids();
    let healthy: Vec<&str> = all
        .iter()
        .map(String::as_str)
        .filter(|id| !faulty.contains(id))
        .collect();
    assert_eq!(healthy.len(), 13);
    let (window, status) =
        common::assert_unslowed(&site.config, &healthy, Duration::from_secs(15), WINDOW).await;
    let counts = count_by_device(&window);
    for device in &healthy {
        assert_eq!(status[*device].state, CommState::Online, "{device}");
    }
    for (kind, device) in faults {
        assert_eq!(counts.get(device), None, "{device} ({kind:?}) sent samples");
        let seen = &status[device];
        assert_eq!(seen.state, CommState::Offline, "{device}: {seen:?}");
        let failures = if kind == FaultKind::BadChecksum {
            seen.link_errors
        } else {
            seen.timeouts
        };
        assert!(failures >= 3, "{device}: {seen:?}");
    }
}

/// The sampling window of the scheduler test.
const WINDOW: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meter_faults_raise_e1_e16_h7_and_h8_from_what_the_meters_send() {
    let mut site = meter_site(2_000, 1_000).await;
    // An hour's hold (H7) becomes a second.
    shorten_holds(&mut site.config, 3600);
    for fault in [
        Fault::plant(FaultKind::VoltageSag),
        Fault::on(FaultKind::BatteryLow, "meter-02"),
        Fault::on(FaultKind::BatteryLow, "heat-primary"),
        Fault::on(FaultKind::LowDeltaT, "heat-03"),
    ] {
        site.community.inject(fault);
    }
    let mut engine = RuleEngine::new(&site.config, None, unix_nanos(std::time::SystemTime::now()));
    let (gateway, mut rx) = common::start_gateway(&site.config);
    let expected: BTreeSet<(String, String)> = [
        ("meter-01", "E1.household"),
        ("meter-06", "E1.household"),
        ("meter-02", "E16"),
        ("heat-primary", "H8"),
        ("heat-03", "H7.heat_meter"),
    ]
    .into_iter()
    .map(|(d, r)| (d.to_string(), r.to_string()))
    .collect();
    let mut raised: BTreeSet<(String, String)> = BTreeSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !expected.is_subset(&raised) {
        let sample = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("raised only {raised:?} in 30 s, expected {expected:?}"))
            .expect("samples flow");
        for event in engine.evaluate(&sample) {
            assert!(event.firing, "{event:?}");
            raised.insert((event.device.to_string(), event.rule.to_string()));
        }
    }
    gateway.stop(Duration::from_secs(4)).await;
    // Nothing else: the sag is on every household meter, the battery and the bypass only where
    // they were planted.
    for (device, rule) in &raised {
        let household_sag = device.starts_with("meter-") && rule == "E1.household";
        assert!(
            household_sag || expected.contains(&(device.clone(), rule.clone())),
            "{device} raised {rule}"
        );
    }
}
