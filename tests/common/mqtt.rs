//! An MQTT subscriber for tests: collects what a broker delivers on a topic filter.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, QoS};
use tokio::time::Instant;

pub type Received = Arc<Mutex<Vec<(String, serde_json::Value, bool)>>>;

pub fn unique(name: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("it-{name}-{}-{nanos}", std::process::id())
}

pub fn host_port(addr: &str) -> (String, u16) {
    let (host, port) = addr.rsplit_once(':').expect("host:port");
    (host.to_string(), port.parse().expect("a port"))
}

/// Subscribes to `filter` and collects (topic, payload, retain flag) until dropped.
pub async fn subscribe(addr: &str, filter: &str) -> (Received, tokio::task::JoinHandle<()>) {
    let (host, port) = host_port(addr);
    let (client, mut eventloop) = AsyncClient::builder(MqttOptions::new(
        unique("sub"),
        rumqttc::Broker::tcp(host, port),
    ))
    .capacity(16)
    .build();
    client
        .subscribe(filter, QoS::AtLeastOnce)
        .await
        .expect("subscribe queued");
    let received: Received = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&received);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::time::timeout_at(deadline, eventloop.poll()).await {
            Ok(Ok(Event::Incoming(Incoming::SubAck(_)))) => break,
            Ok(Ok(_)) => {}
            Ok(Err(e)) => panic!("subscriber: {e}"),
            Err(_) => panic!("no SUBACK"),
        }
    }
    let task = tokio::spawn(async move {
        let _client = client;
        while let Ok(event) = eventloop.poll().await {
            if let Event::Incoming(Incoming::Publish(p)) = event {
                let json = serde_json::from_slice(&p.payload).unwrap_or(serde_json::Value::Null);
                sink.lock().expect("lock").push((
                    String::from_utf8_lossy(&p.topic).into_owned(),
                    json,
                    p.retain,
                ));
            }
        }
    });
    (received, task)
}

/// A client that publishes (QoS 1); its event loop runs until the client is dropped.
pub async fn publisher(addr: &str) -> (AsyncClient, tokio::task::JoinHandle<()>) {
    let (host, port) = host_port(addr);
    let mut options = MqttOptions::new(unique("pub"), rumqttc::Broker::tcp(host, port));
    options.set_max_packet_size(4 << 20, 4 << 20);
    let (client, mut eventloop) = AsyncClient::builder(options).capacity(256).build();
    let task = tokio::spawn(async move {
        loop {
            if let Err(e) = eventloop.poll().await {
                eprintln!("publisher: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    });
    (client, task)
}

/// A Mosquitto of the test's own (`RGW_TEST_MOSQUITTO_BIN`) on a free loopback port, which the
/// test can stop and start again; `listener_extra` adds lines to its listener (TLS files).
pub struct OwnBroker {
    binary: String,
    conf: std::path::PathBuf,
    port: u16,
    child: Option<std::process::Child>,
}

impl OwnBroker {
    /// Configured in `dir`, not started.
    pub fn new(binary: String, dir: &std::path::Path, listener_extra: &str) -> OwnBroker {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        // Started as root, Mosquitto switches to its own user, which cannot read the test's
        // private files; it stays whoever runs the test.
        let user = std::process::Command::new("id")
            .arg("-un")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .expect("id runs");
        let conf = dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!("user {user}\nlistener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n{listener_extra}"),
        )
        .expect("conf");
        OwnBroker {
            binary,
            conf,
            port,
            child: None,
        }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Starts it and waits, up to 10 s, until it accepts connections.
    pub async fn start(&mut self) {
        let child = std::process::Command::new(&self.binary)
            .arg("-c")
            .arg(&self.conf)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("mosquitto starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(self.addr()).is_err() {
            assert!(Instant::now() < deadline, "broker did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for OwnBroker {
    fn drop(&mut self) {
        self.stop();
    }
}
