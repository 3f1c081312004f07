//! Alarm publishing to MQTT: for every alarm event, the alarm's current state retained at
//! `<prefix>/<gateway>/alarm/<device>/<rule>` and the event itself on `<prefix>/<gateway>/events`,
//! both QoS 1.
//!
//! The client library keeps its queue in memory only, so delivery is tracked here: an event
//! leaves the MQTT outbox only when the broker has sent PUBACK for both messages (outgoing packet
//! ids matched with incoming PUBACKs). Any error, or a PUBACK that does not come, drops the
//! connection; a new one is made with jittered backoff (rumqttc has none), and the event is
//! published again (QoS 1 allows duplicates). The event loop is polled while idle, so keep-alive
//! pings go out.
//!
//! The gateway's own state is retained at `<prefix>/<gateway>/status`: `{"state":"online",…}`
//! once connected, `{"state":"offline",…}` when it stops, and the same as the connection's last
//! will, which the broker publishes when the gateway vanishes (power cut, crash, lost 4G) once
//! 1.5 keep-alive intervals pass without a word from it.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{
    AsyncClient, Event, EventLoop, Incoming, LastWill, MqttOptions, Outgoing, PublishOptions, QoS,
};
use serde_json::json;
use tokio::sync::{watch, Notify};

use crate::backoff::Backoff;
use crate::buffer::outbox::Outbox;
use crate::config::MqttAlarmConfig;
use crate::model::{AlarmEvent, Severity};
use crate::mqtt::BrokerError;
use crate::mqtt::{connack, BROKER_TIMEOUT};
use crate::sinks::webhook::message::local_time;

pub struct MqttAlarms {
    options: MqttOptions,
    prefix: String,
    site: String,
    gateway: String,
    min_severity: Severity,
}

/// A topic level from a name: the separators and wildcards MQTT reserves become `_`.
fn level(name: &str) -> String {
    name.chars()
        .map(|c| if matches!(c, '/' | '+' | '#') { '_' } else { c })
        .collect()
}

enum Stop {
    Reconnect,
    Shutdown,
}

impl MqttAlarms {
    pub fn new(
        config: &MqttAlarmConfig,
        site: &str,
        gateway: &str,
    ) -> Result<MqttAlarms, BrokerError> {
        let mut options = crate::mqtt::options(&config.broker(gateway))?;
        options.set_clean_session(true);
        let mut alarms = MqttAlarms {
            options,
            prefix: config.topic_prefix.clone(),
            site: site.to_string(),
            gateway: gateway.to_string(),
            min_severity: config.min_severity,
        };
        let will = LastWill::new(
            alarms.status_topic(),
            alarms.status("offline"),
            QoS::AtLeastOnce,
            true,
        );
        alarms.options.set_last_will(will);
        Ok(alarms)
    }

    /// Where the gateway's own state is retained.
    pub fn status_topic(&self) -> String {
        format!("{}/{}/status", self.prefix, level(&self.gateway))
    }

    fn status(&self, state: &str) -> Vec<u8> {
        json!({
            "state": state,
            "gateway": self.gateway,
            "site": self.site,
            "version": env!("CARGO_PKG_VERSION"),
        })
        .to_string()
        .into_bytes()
    }

    /// Publishes the gateway's state, retained, and waits for its PUBACK.
    async fn announce(&self, client: &AsyncClient, eventloop: &mut EventLoop, state: &str) -> bool {
        let options = PublishOptions::new(QoS::AtLeastOnce).retained();
        if client
            .publish(self.status_topic(), self.status(state), options)
            .await
            .is_err()
        {
            return false;
        }
        matches!(
            tokio::time::timeout(BROKER_TIMEOUT, acknowledged(eventloop, 1)).await,
            Ok(Ok(()))
        )
    }

    /// The retained-state topic of an alarm and the events topic.
    pub fn topics(&self, event: &AlarmEvent) -> (String, String) {
        let base = format!("{}/{}", self.prefix, level(&self.gateway));
        (
            format!(
                "{base}/alarm/{}/{}",
                level(&event.device),
                level(&event.rule)
            ),
            format!("{base}/events"),
        )
    }

    fn payload(&self, event: &AlarmEvent) -> Vec<u8> {
        json!({
            "id": event.id,
            "site": self.site,
            "gateway": self.gateway,
            "device": event.device,
            "rule": event.rule,
            "severity": event.severity,
            "state": if event.firing { "firing" } else { "cleared" },
            "flapping": event.flapping,
            "value": event.value,
            "limit": event.limit,
            "message": event.message,
            "words": event.words,
            "time": local_time(event.time_ns),
            "time_ns": event.time_ns,
        })
        .to_string()
        .into_bytes()
    }

    /// Delivers the outbox until `shutdown`.
    pub async fn run(
        self,
        outbox: Outbox,
        appended: Arc<Notify>,
        mut shutdown: watch::Receiver<bool>,
        min_backoff: Duration,
    ) {
        let mut backoff = Backoff::new(min_backoff, Duration::from_secs(60));
        loop {
            metrics::counter!("rgw_mqtt_connection_attempts_total").increment(1);
            let (client, mut eventloop) = AsyncClient::builder(self.options.clone())
                .capacity(16)
                .build();
            let stop = match tokio::time::timeout(BROKER_TIMEOUT, connack(&mut eventloop)).await {
                Ok(Ok(())) => {
                    backoff.reset();
                    tracing::info!(broker = %crate::mqtt::host(&self.options), "MQTT connected");
                    if self.announce(&client, &mut eventloop, "online").await {
                        self.deliver(&client, &mut eventloop, &outbox, &appended, &mut shutdown)
                            .await
                    } else {
                        tracing::warn!("The MQTT broker did not take the gateway's online state");
                        Stop::Reconnect
                    }
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "MQTT broker unreachable");
                    Stop::Reconnect
                }
                Err(_) => {
                    tracing::warn!("MQTT broker did not answer CONNACK in time");
                    Stop::Reconnect
                }
            };
            if matches!(stop, Stop::Shutdown) {
                // Said before leaving: a clean DISCONNECT makes the broker drop the last will.
                let leaving = async {
                    self.announce(&client, &mut eventloop, "offline").await;
                    if client.try_disconnect().is_ok() {
                        while let Ok(event) = eventloop.poll().await {
                            if matches!(event, Event::Outgoing(Outgoing::Disconnect)) {
                                break;
                            }
                        }
                    }
                };
                let _ = tokio::time::timeout(Duration::from_secs(2), leaving).await;
                return;
            }
            let delay = backoff.next_delay();
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    /// Publishes outbox events on a connected client until the connection fails or shutdown.
    async fn deliver(
        &self,
        client: &AsyncClient,
        eventloop: &mut EventLoop,
        outbox: &Outbox,
        appended: &Notify,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Stop {
        loop {
            let next = match outbox.take().await {
                Ok(next) => next,
                Err(e) => {
                    tracing::error!(error = %e, "Cannot read the MQTT alarm outbox");
                    return Stop::Reconnect;
                }
            };
            let Some((seq, event)) = next else {
                // Idle: keep the connection alive until there is something to send.
                tokio::select! {
                    _ = appended.notified() => continue,
                    _ = shutdown.changed() => return Stop::Shutdown,
                    polled = eventloop.poll() => match polled {
                        Ok(_) => continue,
                        Err(e) => {
                            tracing::warn!(error = %e, "MQTT connection lost");
                            return Stop::Reconnect;
                        }
                    },
                }
            };
            if event.severity >= self.min_severity {
                let (state_topic, events_topic) = self.topics(&event);
                let payload = self.payload(&event);
                let queued = async {
                    client
                        .publish(
                            state_topic,
                            payload.clone(),
                            PublishOptions::new(QoS::AtLeastOnce).retain(true),
                        )
                        .await?;
                    client
                        .publish(events_topic, payload, PublishOptions::new(QoS::AtLeastOnce))
                        .await
                };
                if queued.await.is_err() {
                    return Stop::Reconnect;
                }
                match tokio::time::timeout(BROKER_TIMEOUT, acknowledged(eventloop, 2)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, alarm = %event.id, "MQTT connection lost before PUBACK");
                        return Stop::Reconnect;
                    }
                    Err(_) => {
                        tracing::warn!(alarm = %event.id, "No PUBACK in time; reconnecting");
                        return Stop::Reconnect;
                    }
                }
            }
            if let Err(e) = outbox.mark_delivered(seq).await {
                tracing::error!(error = %e, "Cannot mark an alarm published; it may be published twice");
            }
        }
    }
}

/// Polls until `count` publishes went out and each got its PUBACK.
async fn acknowledged(
    eventloop: &mut EventLoop,
    count: usize,
) -> Result<(), rumqttc::ConnectionError> {
    let mut sent: HashSet<u16> = HashSet::new();
    let mut acked: HashSet<u16> = HashSet::new();
    loop {
        match eventloop.poll().await? {
            Event::Outgoing(Outgoing::Publish(pkid)) => {
                sent.insert(pkid);
            }
            Event::Incoming(Incoming::PubAck(ack)) => {
                acked.insert(ack.pkid);
            }
            _ => {}
        }
        if sent.len() >= count && sent.is_subset(&acked) {
            return Ok(());
        }
    }
}
