//! The life of devices that join by publishing (MQTT): how fast new ones are taken on, when the
//! list of them is saved, and when a silent one is forgotten.
//!
//! A publisher that invents device ids (or a misconfigured DTU that puts a counter in the id)
//! must not cost the gateway more than a trickle: at most [`ADOPTIONS_PER_MINUTE`] new devices
//! a minute after a first [`ADOPTION_BURST`] (a site's sensors all appear at the first start);
//! a device over the budget is taken on at a later message. Taking one on no longer rewrites and
//! fsyncs the state file: the list is saved [`SAVE_ADOPTED_AFTER`] later, with whatever else is
//! saved by then. A device silent for `forget_after` (default 7 days) is forgotten, its alarms
//! cleared, instead of alarming as silent for ever after it was taken away.

/// New devices taken on at once before the per-minute budget applies.
pub const ADOPTION_BURST: u32 = 60;
/// New devices taken on per minute after the burst.
pub const ADOPTIONS_PER_MINUTE: u32 = 10;
/// How long a new device's place in the saved list may wait for a save.
pub const SAVE_ADOPTED_AFTER_NS: i64 = 10 * 60 * 1_000_000_000;

/// The budget for new devices, and what is waiting to be saved.
#[derive(Debug, Clone)]
pub struct Publishers {
    /// New devices that may still be taken on now.
    budget: u32,
    /// When the budget was last topped up.
    topped_up_ns: Option<i64>,
    /// When the first device not yet saved was taken on.
    unsaved_since_ns: Option<i64>,
    /// Silence after which a publishing device is forgotten (none: never).
    pub forget_after_ns: Option<i64>,
    /// Whether the empty budget has been reported since it last had room.
    refused_warned: bool,
}

impl Publishers {
    pub fn new(forget_after_ns: Option<i64>) -> Publishers {
        Publishers {
            budget: ADOPTION_BURST,
            topped_up_ns: None,
            unsaved_since_ns: None,
            forget_after_ns,
            refused_warned: false,
        }
    }

    /// Takes one new device from the budget at `now`; false when it is spent.
    pub fn take(&mut self, device: &str, now_ns: i64) -> bool {
        if self.budget == 0 {
            if !self.refused_warned {
                self.refused_warned = true;
                tracing::warn!(
                    device,
                    per_minute = ADOPTIONS_PER_MINUTE,
                    "Publishing devices appear faster than they are taken on; the rest wait for a later message (a publisher inventing device ids?)"
                );
            }
            return false;
        }
        self.budget -= 1;
        self.unsaved_since_ns.get_or_insert(now_ns);
        true
    }

    /// Tops the budget up for the minutes since the last top-up; true when the list of devices
    /// is due to be saved.
    pub fn tick(&mut self, now_ns: i64) -> bool {
        let since = *self.topped_up_ns.get_or_insert(now_ns);
        let minutes = (now_ns - since) / 60_000_000_000;
        if minutes > 0 {
            let added = u32::try_from(minutes)
                .unwrap_or(u32::MAX)
                .saturating_mul(ADOPTIONS_PER_MINUTE);
            self.budget = self.budget.saturating_add(added).min(ADOPTION_BURST);
            self.topped_up_ns = Some(since + minutes * 60_000_000_000);
            self.refused_warned = false;
        }
        match self.unsaved_since_ns {
            Some(since) if now_ns - since >= SAVE_ADOPTED_AFTER_NS => {
                self.unsaved_since_ns = None;
                true
            }
            _ => false,
        }
    }

    /// Whether a device last heard at `last_seen_ns` is to be forgotten at `now`.
    pub fn forgotten(&self, last_seen_ns: i64, now_ns: i64) -> bool {
        self.forget_after_ns
            .is_some_and(|after| now_ns - last_seen_ns >= after)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: i64 = 60_000_000_000;

    #[test]
    fn a_burst_then_ten_a_minute() {
        let mut p = Publishers::new(None);
        p.tick(0);
        let taken = (0..100).filter(|n| p.take(&format!("d{n}"), 0)).count();
        assert_eq!(taken, ADOPTION_BURST as usize);
        p.tick(MINUTE - 1);
        assert!(
            !p.take("late", MINUTE - 1),
            "not before a minute has passed"
        );
        p.tick(MINUTE);
        let taken = (0..100)
            .filter(|n| p.take(&format!("e{n}"), MINUTE))
            .count();
        assert_eq!(taken, ADOPTIONS_PER_MINUTE as usize);
        // A quiet hour refills the burst, not more.
        p.tick(61 * MINUTE);
        let taken = (0..100)
            .filter(|n| p.take(&format!("f{n}"), 61 * MINUTE))
            .count();
        assert_eq!(taken, ADOPTION_BURST as usize);
    }

    #[test]
    fn the_list_is_saved_ten_minutes_after_the_first_unsaved_device() {
        let mut p = Publishers::new(None);
        assert!(!p.tick(0));
        assert!(p.take("a", MINUTE));
        assert!(p.take("b", 5 * MINUTE));
        assert!(!p.tick(10 * MINUTE));
        assert!(p.tick(11 * MINUTE), "due ten minutes after the first");
        assert!(!p.tick(30 * MINUTE), "once");
    }

    #[test]
    fn silence_beyond_the_limit_forgets() {
        let p = Publishers::new(Some(7 * 1440 * MINUTE));
        assert!(!p.forgotten(0, 7 * 1440 * MINUTE - 1));
        assert!(p.forgotten(0, 7 * 1440 * MINUTE));
        assert!(!Publishers::new(None).forgotten(0, i64::MAX));
    }
}
