//! systemd integration without libsystemd: the sd_notify protocol (a datagram of `KEY=value`
//! lines to the socket in `$NOTIFY_SOCKET`) for readiness (`Type=notify`), reloads, stopping and
//! the watchdog (`WatchdogSec=`, pinged at half the interval in `$WATCHDOG_USEC`). Outside
//! systemd every call does nothing.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

/// The service manager's notification socket, when there is one.
pub struct Notifier {
    socket: Option<(UnixDatagram, std::os::unix::net::SocketAddr)>,
}

impl Notifier {
    /// From `$NOTIFY_SOCKET` (a path, or `@name` in the abstract namespace).
    pub fn from_env() -> Notifier {
        let socket = std::env::var_os("NOTIFY_SOCKET").and_then(|path| {
            let path = path.to_string_lossy().into_owned();
            let address = match path.strip_prefix('@') {
                Some(name) => {
                    use std::os::linux::net::SocketAddrExt as _;
                    std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
                }
                None => std::os::unix::net::SocketAddr::from_pathname(&path),
            };
            match (UnixDatagram::unbound(), address) {
                (Ok(socket), Ok(address)) => Some((socket, address)),
                (Err(e), _) | (_, Err(e)) => {
                    tracing::warn!(socket = %path, error = %e, "Cannot use NOTIFY_SOCKET");
                    None
                }
            }
        });
        Notifier { socket }
    }

    /// Sends `state` (`READY=1`, `STOPPING=1`, `WATCHDOG=1`, `STATUS=…`).
    pub fn notify(&self, state: &str) {
        if let Some((socket, address)) = &self.socket {
            if let Err(e) = socket.send_to_addr(state.as_bytes(), address) {
                tracing::warn!(error = %e, "Cannot notify systemd");
            }
        }
    }

    /// How often to ping the watchdog: half of `$WATCHDOG_USEC`, when it is meant for us
    /// (`$WATCHDOG_PID` unset or ours).
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.socket.as_ref()?;
        let for_us = std::env::var("WATCHDOG_PID")
            .ok()
            .is_none_or(|pid| pid.trim() == std::process::id().to_string());
        let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.trim().parse().ok()?;
        (for_us && usec > 0).then(|| Duration::from_micros(usec / 2))
    }
}
