//! MQTT topic filters (MQTT 3.1.1 §4.7): which mapping a message's topic belongs to.

/// Whether `topic` matches `filter`: `+` is one whole level, a final `#` is the rest (the parent
/// level included); wildcards at the first level do not match `$`-topics (broker internals).
pub fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && filter.starts_with(['+', '#']) {
        return false;
    }
    let mut levels = topic.split('/');
    for wanted in filter.split('/') {
        if wanted == "#" {
            return true;
        }
        match levels.next() {
            Some(level) if wanted == "+" || wanted == level => {}
            _ => return false,
        }
    }
    levels.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn single_level_wildcards_match_one_whole_level() {
        assert!(matches(
            "site/+/gas/+/telemetry",
            "site/xf/gas/GRB-01/telemetry"
        ));
        assert!(!matches("site/+/gas/+/telemetry", "site/xf/gas/telemetry"));
        assert!(!matches(
            "site/+/gas/+/telemetry",
            "site/xf/gas/a/b/telemetry"
        ));
        assert!(matches("a/+", "a/"));
        assert!(!matches("a/+", "a"));
    }

    #[test]
    fn a_final_hash_matches_the_rest_and_the_parent() {
        assert!(matches(
            "city/shuozhou/well/#",
            "city/shuozhou/well/status/well_07"
        ));
        assert!(matches("city/shuozhou/well/#", "city/shuozhou/well"));
        assert!(!matches("city/shuozhou/well/#", "city/shuozhou/wells"));
        assert!(matches("#", "anything/at/all"));
    }

    #[test]
    fn exact_filters_and_system_topics() {
        assert!(matches("a/b", "a/b"));
        assert!(!matches("a/b", "a/b/c"));
        assert!(!matches("#", "$SYS/broker/uptime"));
        assert!(!matches("+/broker/uptime", "$SYS/broker/uptime"));
        assert!(matches("$SYS/#", "$SYS/broker/uptime"));
    }
}
