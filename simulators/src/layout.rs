//! Which simulated devices exist, on which bus, at which unit id or meter address: the example
//! community of DOMAIN.md §3.2, or a fleet of identical pump controllers for load tests.

use std::net::{IpAddr, SocketAddr};

use crate::devices::published::Shape;
use crate::devices::{Feed, Kind, PressurePoint, Transformer};
use crate::meters::{building_meters, building_water_meters, primary_meter, stairwell, SimMeter};

/// How a simulated bus is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimTransport {
    /// Modbus TCP (a DTU in gateway mode, or a PLC's own port).
    Tcp,
    /// Raw RTU frames over TCP (a transparent serial server).
    RtuOverTcp,
    /// A line of meters (DL/T 645, CJ/T 188, M-Bus) behind a transparent serial server.
    MeterLine,
}

#[derive(Debug, Clone)]
pub struct BusSpec {
    pub id: String,
    pub transport: SimTransport,
    /// Port 0 picks a free port.
    pub listen: SocketAddr,
}

#[derive(Debug, Clone)]
pub struct DeviceSpec {
    pub id: String,
    pub bus: String,
    pub unit: u8,
    pub kind: Kind,
}

/// A device that publishes over MQTT.
#[derive(Debug, Clone)]
pub struct PublishedSpec {
    pub id: String,
    pub shape: Shape,
}

#[derive(Debug, Clone)]
pub struct Layout {
    pub buses: Vec<BusSpec>,
    pub devices: Vec<DeviceSpec>,
    /// Devices that publish over MQTT (when the community is given a broker).
    pub published: Vec<PublishedSpec>,
    /// Meters by the `MeterLine` bus they are on.
    pub meters: Vec<(String, SimMeter)>,
}

/// LV incomer: 800 kVA at 0.4 kV is 1 155 A; CT 1500/5.
const LV_INCOMER: Feed = Feed {
    pt: 1.0,
    ct: 300.0,
    nominal_phase_v: 230.0,
    rated_a: 1155.0,
    load_share: 1.0,
    on_tx1_lv: true,
};

/// Ports of the example site's buses, relative to the port base.
pub const EXAMPLE_SITE_BUSES: [(&str, SimTransport); 7] = [
    ("pump-room", SimTransport::RtuOverTcp),
    ("prv-chamber", SimTransport::Tcp),
    ("substation", SimTransport::RtuOverTcp),
    ("heating", SimTransport::Tcp),
    ("stairwell", SimTransport::MeterLine),
    ("heat-meters", SimTransport::MeterLine),
    ("water-meters", SimTransport::MeterLine),
];

impl Layout {
    /// The example community (DOMAIN.md §3.2). Bus `i` listens on `port_base + 1 + i`, or on a
    /// free port each when `port_base` is 0.
    pub fn example_site(host: IpAddr, port_base: u16) -> Layout {
        let buses = EXAMPLE_SITE_BUSES
            .iter()
            .enumerate()
            .map(|(i, (id, transport))| BusSpec {
                id: id.to_string(),
                transport: *transport,
                listen: SocketAddr::new(
                    host,
                    if port_base == 0 {
                        0
                    } else {
                        port_base + 1 + i as u16
                    },
                ),
            })
            .collect();
        let tx2 = Feed {
            on_tx1_lv: false,
            load_share: 0.9,
            ..LV_INCOMER
        };
        let hv = Feed {
            pt: 100.0,
            ct: 15.0,
            nominal_phase_v: 10_000.0 / 3f64.sqrt(),
            // Both transformers' 1 600 kVA at 10 kV.
            rated_a: 1_600.0 / (3f64.sqrt() * 10.0),
            load_share: 0.95,
            on_tx1_lv: false,
        };
        let feeder = Feed {
            ct: 1.0,
            rated_a: 1155.0,
            load_share: 0.4,
            ..LV_INCOMER
        };
        let device = |id: &str, bus: &str, unit: u8, kind: Kind| DeviceSpec {
            id: id.to_string(),
            bus: bus.to_string(),
            unit,
            kind,
        };
        let devices = vec![
            device("booster-1", "pump-room", 1, Kind::BoosterPump),
            device("break-tank", "pump-room", 2, Kind::LevelTransmitter),
            device(
                "prv-inlet",
                "prv-chamber",
                11,
                Kind::PressureTransmitter(PressurePoint::PrvInlet { unit: 11 }),
            ),
            device(
                "prv-outlet",
                "prv-chamber",
                12,
                Kind::PressureTransmitter(PressurePoint::PrvOutlet { unit: 12 }),
            ),
            device("dma-flow", "prv-chamber", 13, Kind::EmFlowmeter),
            device("hv-meter", "substation", 20, Kind::AcrelMeter(hv)),
            device("tx1-meter", "substation", 21, Kind::AcrelMeter(LV_INCOMER)),
            device("tx2-meter", "substation", 22, Kind::AcrelMeter(tx2)),
            device("feeder-1", "substation", 31, Kind::Dtsu666(feeder)),
            device("feeder-2", "substation", 32, Kind::Dtsu666(feeder)),
            device(
                "tx1-temp",
                "substation",
                41,
                Kind::DryTransformer(Transformer {
                    number: 1,
                    load_factor: 1.0,
                }),
            ),
            device(
                "tx2-temp",
                "substation",
                42,
                Kind::DryTransformer(Transformer {
                    number: 2,
                    load_factor: 0.9,
                }),
            ),
            device("heating-plc", "heating", 1, Kind::HeatingPlc),
        ];
        let published = [
            ("GRB-01", Shape::GasRegulator),
            ("GRB-02", Shape::GasRegulator),
            ("well_07", Shape::ValveWell),
            ("well_08", Shape::ValveWell),
            ("room_11-2-0901", Shape::Room),
            ("room_3-1-0502", Shape::Room),
        ]
        .into_iter()
        .map(|(id, shape)| PublishedSpec {
            id: id.to_string(),
            shape,
        })
        .collect();
        // Building 11 unit 1's stairwell; the heating loop's ten building meters and the
        // primary meter share one M-Bus/RS-485 line.
        let stairwell = stairwell(6).into_iter().map(SimMeter::from);
        let heat = building_meters(crate::meters::heat::BUILDINGS)
            .into_iter()
            .chain([primary_meter()])
            .map(SimMeter::from);
        let water = building_water_meters().into_iter().map(SimMeter::from);
        let meters = stairwell
            .map(|m| ("stairwell".to_string(), m))
            .chain(heat.map(|m| ("heat-meters".to_string(), m)))
            .chain(water.map(|m| ("water-meters".to_string(), m)))
            .collect();
        Layout {
            buses,
            devices,
            published,
            meters,
        }
    }

    /// `count` booster controllers on Modbus TCP buses of `per_bus` units each, named
    /// `pump-0001` … on buses `fleet-01` …, for load tests. Bus `i` (from 0) listens on
    /// `port_base + 1 + i`, or on a free port when `port_base` is 0.
    pub fn pump_fleet(host: IpAddr, port_base: u16, count: usize, per_bus: usize) -> Layout {
        let per_bus = per_bus.clamp(1, 247);
        let mut layout = Layout {
            buses: Vec::new(),
            devices: Vec::new(),
            published: Vec::new(),
            meters: Vec::new(),
        };
        for n in 0..count {
            let bus = format!("fleet-{:02}", n / per_bus + 1);
            if n % per_bus == 0 {
                let index = (n / per_bus) as u16;
                layout.buses.push(BusSpec {
                    id: bus.clone(),
                    transport: SimTransport::Tcp,
                    listen: SocketAddr::new(
                        host,
                        if port_base == 0 {
                            0
                        } else {
                            port_base + 1 + index
                        },
                    ),
                });
            }
            layout.devices.push(DeviceSpec {
                id: format!("pump-{:04}", n + 1),
                bus,
                unit: (n % per_bus + 1) as u8,
                kind: Kind::BoosterPump,
            });
        }
        layout
    }
}
