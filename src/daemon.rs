//! `run` as a service: readiness and watchdog for systemd, SIGHUP reloads, SIGTERM/SIGINT stop.
//!
//! A reload re-reads the config file. If it does not load, the error is logged and the running
//! configuration stays. Otherwise the sources are updated per bus ([`Pipeline::reload`]): a bus
//! whose settings, devices or profiles changed is restarted, the others keep polling, and
//! nothing already passed to the outputs is touched. Changes to `[gateway]`, `[outputs]`,
//! `[buffer]`, `[alarms]`, the rule packs and `[http]` take effect at the next restart, and the
//! log says so.

use std::sync::Arc;
use std::time::Duration;

use crate::config::{load_config, LoadedConfig};
use crate::pipeline::observed::Observed;
use crate::pipeline::Pipeline;
use crate::systemd::Notifier;

pub mod startup_pages;

/// Pages out the start-up-only code ([`startup_pages`]) and says so in the log.
pub fn hand_back_startup_pages() {
    let done = startup_pages::hand_back();
    tracing::debug!(
        mappings = done.mappings,
        bytes = done.bytes,
        "Start-up code paged out"
    );
}

/// Parts of the config a reload does not apply, and whether each changed.
fn needs_restart(running: &LoadedConfig, new: &LoadedConfig) -> Vec<&'static str> {
    let (a, b) = (&running.gateway, &new.gateway);
    let text = |x: &dyn std::fmt::Debug| format!("{x:?}");
    [
        ("[outputs]", text(&a.outputs), text(&b.outputs)),
        ("[buffer]", text(&a.buffer), text(&b.buffer)),
        ("[alarms]", text(&a.alarms), text(&b.alarms)),
        ("rule packs", text(&running.rules), text(&new.rules)),
        ("[http]", text(&a.http), text(&b.http)),
    ]
    .into_iter()
    .filter(|(_, before, after)| before != after)
    .map(|(section, ..)| section)
    .collect()
}

/// Re-reads the config and applies what can be applied while running.
pub async fn reload(running: &mut LoadedConfig, pipeline: &mut Pipeline, notifier: &Notifier) {
    notifier.notify("RELOADING=1");
    tracing::info!(path = %running.path.display(), "SIGHUP: reloading the config");
    match load_config(&running.path) {
        Err(e) => tracing::error!(error = %e, "Config not reloaded; the running one stays"),
        Ok(new)
            if format!("{:?}", new.gateway.gateway) != format!("{:?}", running.gateway.gateway) =>
        {
            tracing::error!("The [gateway] section changed (identity, data directory); restart the service to apply it. Nothing reloaded");
        }
        Ok(new) => {
            let later = needs_restart(running, &new);
            if !later.is_empty() {
                tracing::warn!(sections = ?later, "These changes apply at the next restart");
            }
            match pipeline.reload(&new).await {
                Ok(done) => {
                    tracing::info!(
                        restarted = ?done.restarted,
                        started = ?done.started,
                        stopped = ?done.stopped,
                        unchanged = ?done.unchanged,
                        "Config reloaded"
                    );
                    running.gateway.bus = new.gateway.bus;
                    running.gateway.device = new.gateway.device;
                    running.gateway.mqtt_source = new.gateway.mqtt_source;
                    running.profiles = new.profiles;
                }
                Err(e) => tracing::error!(error = %e, "The MQTT source could not be restarted"),
            }
        }
    }
    hand_back_startup_pages();
    notifier.notify("READY=1");
}

/// Pings the systemd watchdog every `every` while the rules stage is alive (it goes round its
/// loop at least every second); a stalled pipeline stops the pings and systemd restarts us.
pub async fn watchdog(every: Duration, observed: Arc<Observed>, notifier: Arc<Notifier>) {
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        if observed.view.alive(every.max(Duration::from_secs(5))) {
            notifier.notify("WATCHDOG=1");
        } else {
            tracing::error!("The rules stage has stalled; not pinging the systemd watchdog");
        }
    }
}

/// Waits for SIGTERM or SIGINT.
pub async fn termination_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
