//! What a property manager reads: the alarm as a WeCom or DingTalk markdown message in Chinese,
//! at most three lines on a phone (what happened where, the reading against its limit since
//! when, what to do), every text escaped for the robots' markdown; or as JSON for a generic
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

/// `MM-DD HH:MM` in China Standard Time, as a phone shows a recent time.
fn short_time(time_ns: i64) -> String {
    let full = local_time(time_ns);
    full.get(5..16).unwrap_or(&full).to_string()
}

/// Text as the robots' markdown shows it literally: the characters markdown would read as
/// emphasis, links, headings, quotes, code or escapes become their full-width forms, and line
/// breaks spaces (a name or a published id must not add lines, links or mentions).
pub fn escape(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '*' => '＊',
            '`' => '｀',
            '[' => '［',
            ']' => '］',
            '(' => '（',
            ')' => '）',
            '<' => '＜',
            '>' => '＞',
            '#' => '＃',
            '\\' => '＼',
            '~' => '～',
            '|' => '｜',
            '@' => '＠',
            '\n' | '\r' | '\t' => ' ',
            c if c.is_control() => ' ',
            c => c,
        })
        .collect()
}

/// The first line: severity or recovery, site, place and what happened.
pub fn title(event: &AlarmEvent, site: &str) -> String {
    let state = if event.firing {
        label(event.severity)
    } else {
        "【已恢复】"
    };
    let words = &event.words;
    let place = if words.place.is_empty() {
        &*event.device
    } else {
        &words.place
    };
    let what = if words.title.is_empty() {
        &event.message
    } else {
        &words.title
    };
    format!("{state}{site} {place}：{what}")
}

/// The markdown both robots render: at most three lines on a phone. Raised: the title, the
/// reading and since when, what to do. Cleared: the title, the reading and how long it lasted.
pub fn markdown(event: &AlarmEvent, site: &str) -> String {
    let words = &event.words;
    let since = if words.since_ns > 0 {
        words.since_ns
    } else {
        event.time_ns
    };
    let reading = if words.reading.is_empty() {
        &event.message
    } else {
        &words.reading
    };
    let mut text = format!("**{}**\n", escape(&title(event, site)));
    if event.firing {
        text.push_str(&escape(reading));
        text.push_str(&format!("（{}起", short_time(since)));
        if event.flapping {
            text.push_str("，反复出现，保持报警直到稳定");
        }
        text.push('）');
        if !words.action.is_empty() {
            text.push('\n');
            text.push_str(&escape(&words.action));
        }
    } else {
        let lasted = (event.time_ns - since) as f64 / 1e9;
        text.push_str(&escape(reading));
        text.push_str(&format!(
            "（{}起，持续{}，{}恢复）",
            short_time(since),
            crate::rules::words::duration(lasted),
            short_time(event.time_ns)
        ));
    }
    text
}

/// The request body for a webhook of `kind`.
pub fn body(kind: WebhookKind, event: &AlarmEvent, site: &str, gateway: &str) -> serde_json::Value {
    match kind {
        WebhookKind::WeCom => json!({
            "msgtype": "markdown",
            "markdown": { "content": markdown(event, site) }
        }),
        WebhookKind::DingTalk => json!({
            "msgtype": "markdown",
            "markdown": { "title": escape(&title(event, site)), "text": markdown(event, site) }
        }),
        WebhookKind::Generic => json!({ "site": site, "gateway": gateway, "alarm": event }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::AlarmWords;

    /// 2025-11-27 08:15 China Standard Time.
    const RAISED: i64 = (1_764_172_800 + 8 * 3600 + 15 * 60) * 1_000_000_000;

    fn low_pressure(firing: bool, at: i64) -> AlarmEvent {
        let mut event = AlarmEvent::pump_fault(
            at,
            "顶层水压不足：11层顶层用水点剩余水压 0.094MPa，低于 0.1MPa",
        );
        event.severity = Severity::Warn;
        event.firing = firing;
        event.words = AlarmWords {
            title: "顶层水压不足".into(),
            place: "高区加压泵房（9、10号楼，高区）".into(),
            reading: "11层顶层用水点剩余水压 0.094MPa，低于 0.1MPa".into(),
            action: "检查水泵出口压力与设定值。".into(),
            since_ns: RAISED,
        };
        event
    }

    #[test]
    fn a_raise_is_three_lines_and_a_clear_says_how_long_it_lasted() {
        assert_eq!(
            markdown(&low_pressure(true, RAISED), "幸福小区"),
            "**【警告】幸福小区 高区加压泵房（9、10号楼，高区）：顶层水压不足**\n\
             11层顶层用水点剩余水压 0.094MPa，低于 0.1MPa（11-27 08:15起）\n\
             检查水泵出口压力与设定值。"
        );
        let mut cleared = low_pressure(false, RAISED + 95 * 60 * 1_000_000_000);
        cleared.words.reading = "11层顶层用水点剩余水压 0.12MPa".into();
        assert_eq!(
            markdown(&cleared, "幸福小区"),
            "**【已恢复】幸福小区 高区加压泵房（9、10号楼，高区）：顶层水压不足**\n\
             11层顶层用水点剩余水压 0.12MPa（11-27 08:15起，持续1小时35分钟，11-27 09:50恢复）"
        );
        let mut flapping = low_pressure(true, RAISED);
        flapping.flapping = true;
        assert!(markdown(&flapping, "幸福小区").contains("反复出现，保持报警直到稳定"));
    }

    #[test]
    fn names_and_ids_cannot_add_markdown_lines_or_links() {
        let mut event = low_pressure(true, RAISED);
        event.words.place = "well_07*[点击处理](http://x.example)\n# 新标题 <at>\\".into();
        let text = markdown(&event, "幸福小区");
        assert_eq!(text.lines().count(), 3, "{text}");
        assert!(
            text.contains("well_07＊［点击处理］（http://x.example） ＃ 新标题 ＜at＞＼"),
            "{text}"
        );
        for forbidden in ["[", "](", "\n#", "<at>", "*["] {
            assert!(!text.contains(forbidden), "{forbidden:?} in {text}");
        }
    }

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
