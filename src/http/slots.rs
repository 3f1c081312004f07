//! The endpoint's connection slots. A fixed number of connections is served at once, so that a
//! flood of sockets cannot take the file descriptors the pollers, the log and the uplink need.
//! A full house does not shut out the next person, though: a new connection takes the slot of
//! the oldest one that is not serving a request right now (idle in keep-alive, or still
//! waiting for a header that may never come), which is closed. Only when every slot is busy
//! answering is the new connection closed unserved.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

/// The slots of one endpoint.
#[derive(Debug)]
pub struct Slots {
    open: Mutex<Vec<Entry>>,
    capacity: usize,
    next_id: AtomicU64,
}

#[derive(Debug)]
struct Entry {
    id: u64,
    busy: Arc<AtomicUsize>,
    close: Arc<Notify>,
}

/// One connection's slot: freed when dropped.
#[derive(Debug)]
pub struct Slot {
    slots: Arc<Slots>,
    id: u64,
    /// Requests the connection is serving now.
    pub busy: Arc<AtomicUsize>,
    /// Told when the slot is taken for a newer connection.
    pub close: Arc<Notify>,
}

impl Slots {
    pub fn new(capacity: usize) -> Arc<Slots> {
        Arc::new(Slots {
            open: Mutex::new(Vec::with_capacity(capacity)),
            capacity,
            next_id: AtomicU64::new(0),
        })
    }

    /// A slot for a new connection, evicting the oldest connection not serving a request when
    /// all are taken; `None` when every one is busy.
    pub fn take(self: &Arc<Self>) -> Option<Slot> {
        let mut open = self.lock();
        if open.len() >= self.capacity {
            let idle = open
                .iter()
                .position(|e| e.busy.load(Ordering::Acquire) == 0)?;
            let evicted = open.remove(idle);
            evicted.close.notify_one();
            metrics::counter!("rgw_http_connections_evicted_total").increment(1);
        }
        let entry = Entry {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            busy: Arc::new(AtomicUsize::new(0)),
            close: Arc::new(Notify::new()),
        };
        let slot = Slot {
            slots: Arc::clone(self),
            id: entry.id,
            busy: Arc::clone(&entry.busy),
            close: Arc::clone(&entry.close),
        };
        open.push(entry);
        Some(slot)
    }

    /// Connections holding a slot.
    #[cfg(test)]
    fn held(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Entry>> {
        self.open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.slots.lock().retain(|e| e.id != self.id);
    }
}

/// Counts a request as being served while it lives.
pub struct Serving(Arc<AtomicUsize>);

impl Serving {
    pub fn new(busy: &Arc<AtomicUsize>) -> Serving {
        busy.fetch_add(1, Ordering::AcqRel);
        Serving(Arc::clone(busy))
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_house_evicts_the_oldest_idle_connection_not_a_busy_one() {
        let slots = Slots::new(3);
        let first = slots.take().expect("free");
        let second = slots.take().expect("free");
        let third = slots.take().expect("free");
        let serving = Serving::new(&first.busy);
        // Full: the oldest idle one is the second (the first is answering).
        let fourth = slots.take().expect("an idle one is evicted");
        assert_eq!(slots.held(), 3);
        let evicted = second.close.notified();
        tokio::pin!(evicted);
        assert!(
            futures_ready(evicted.as_mut()),
            "the second connection is told to close"
        );
        let _busy = [Serving::new(&third.busy), Serving::new(&fourth.busy)];
        assert!(slots.take().is_none(), "every slot is answering");
        drop(serving);
        drop(first);
        assert_eq!(slots.held(), 2, "a dropped slot is free again");
        assert!(slots.take().is_some());
    }

    /// Whether a future is ready at its first poll.
    fn futures_ready<F: std::future::Future>(future: std::pin::Pin<&mut F>) -> bool {
        let waker = std::task::Waker::noop();
        let mut context = std::task::Context::from_waker(waker);
        future.poll(&mut context).is_ready()
    }
}
