//! DL/T 645 household meters over a transparent TCP serial server: the simulated stairwell
//! answers the gateway's read frames (built by the gateway's codec, sent through its
//! transaction link) with the values the simulator holds, single-phase meters refuse phases B
//! and C with "no data", and each injected line fault shows as what it is: silence as a
//! timeout, an error reply as the meter's error byte, a bad checksum and garbled bytes as
//! refused replies.

use std::time::Duration;

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
