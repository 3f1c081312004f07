//! What a property manager reads: the alarm as a WeCom or DingTalk markdown message in Chinese
//! (site, device, rule, value, limit, time, what the plan requires), or as JSON for a generic
//! endpoint.

use serde_json::json;

use crate::config::WebhookKind;
use crate::model::{AlarmEvent, Severity};

/// China Standard Time, the operators' clock.
const CST_OFFSET_S: i64 = 8 * 3600;

/// `YYYY-MM-DD HH:MM:SS` in China Standard Time.
pub fn local_time(time_ns: i64) -> String {
    crate::calendar::local_time(time_ns, CST_OFFSET_S)
}

fn label(severity: Severity) -> &'static str {
    match severity {
        Severity::Crit => "【严重】",
        Severity::Warn => "【警告】",
        Severity::Info => "【提示】",
    }
}

/// One line: severity, state, site, device and rule.
pub fn title(event: &AlarmEvent, site: &str) -> String {
    let state = if event.firing { "报警" } else { "已恢复" };
    format!(
        "{}{state} {site} {} {}",
        label(event.severity),
        event.device,
        event.rule
    )
}

/// The markdown body both robots render.
pub fn markdown(event: &AlarmEvent, site: &str, gateway: &str) -> String {
    let flapping = if event.flapping {
        "（频繁报警，已保持）"
    } else {
        ""
    };
    format!(
        "**{}**\n> 小区：{site}（网关 {gateway}）\n> 设备：{}\n> 规则：{}{flapping}\n> 当前值：{:.3}　限值：{:.3}\n> 时间：{}\n\n{}",
        title(event, site),
        event.device,
        event.rule,
        event.value,
        event.limit,
        local_time(event.time_ns),
        event.message
    )
}

/// The request body for a webhook of `kind`.
pub fn body(kind: WebhookKind, event: &AlarmEvent, site: &str, gateway: &str) -> serde_json::Value {
    match kind {
        WebhookKind::WeCom => json!({
            "msgtype": "markdown",
            "markdown": { "content": markdown(event, site, gateway) }
        }),
        WebhookKind::DingTalk => json!({
            "msgtype": "markdown",
            "markdown": { "title": title(event, site), "text": markdown(event, site, gateway) }
        }),
        WebhookKind::Generic => json!({ "site": site, "gateway": gateway, "alarm": event }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_time_is_china_standard_time() {
        // 2025-11-26T19:00:00Z is 03:00 on the 27th in Beijing time.
        assert_eq!(
            local_time(1_764_183_600 * 1_000_000_000),
            "2025-11-27 03:00:00"
        );
        assert_eq!(local_time(0), "1970-01-01 08:00:00");
        // A leap day.
        assert_eq!(
            local_time(1_709_164_800 * 1_000_000_000),
            "2024-02-29 08:00:00"
        );
    }
}
