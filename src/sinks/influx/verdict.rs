//! What to do with InfluxDB's answer to a write: DESIGN.md's response table, as code.
//!
//! | answer | verdict |
//! |---|---|
//! | 204, or another 2xx with an empty body | [`Verdict::Delivered`]: acknowledge the batch |
//! | 2xx with a body (a captive portal's page, a proxy) | [`Verdict::NotAcknowledged`]: keep the data, back off, report |
//! | 400 / 422 naming the bad lines, or a field type conflict | [`Verdict::Rejected`]: those lines to the dead-letter file, resend the rest |
//! | 400 / 422 about the data, naming no line | [`Verdict::RejectedUnknown`]: bisect to find the bad lines |
//! | 400 / 422 that is not about the data | [`Verdict::RequestRefused`]: bisect; on a single line, keep it, back off, report |
//! | 401 / 403 / 404 | [`Verdict::Unauthorized`]: keep the data, back off to the cap, self-alarm |
//! | 413 | [`Verdict::TooLarge`]: split in half; a single line goes to the dead-letter file |
//! | 429 / 503 | [`Verdict::Throttled`]: wait max(Retry-After capped at 10 min, backoff) |
//! | other status (3xx too: redirects are never followed), connect error, timeout | [`Verdict::Failed`]: backoff 1 s → 60 s, no attempt limit |
//!
//! InfluxDB (1.x, 2.x, 3.x) and VictoriaMetrics answer a stored write with 204 and no body, so
//! only that, or an empty 2xx, counts as delivered: a carrier's captive portal answering 200 with
//! a page must never make the gateway delete readings. A 400 that is not about the data (a
//! proxy's generic refusal, a bad `Content-Encoding`) must never move readings to the dead-letter
//! file: a line is dead-lettered only when InfluxDB names it, names its field type conflict, or
//! refuses it alone with a message about the data. Other 4xx answers (405, 408 …) are treated as
//! failures and retried: keeping the data is the safe side; the disk log bounds the total.

use std::time::Duration;

use super::write::WriteResponse;

/// Retry-After values beyond this are capped.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Delivered,
    /// A success status with a body: not InfluxDB's acknowledgement.
    NotAcknowledged,
    /// Indices (into the batch) of the lines the server refused.
    Rejected(Vec<usize>),
    RejectedUnknown,
    /// A 400/422 that says nothing about the data.
    RequestRefused,
    Unauthorized,
    TooLarge,
    Throttled(Option<Duration>),
    Failed,
}

/// Phrases of InfluxDB's and VictoriaMetrics' answers about the data (not the request).
const DATA_ERRORS: [&str; 7] = [
    "unable to parse",
    "partial write",
    "field type conflict",
    "invalid field",
    "invalid tag",
    "beyond retention",
    "max-values-per-tag",
];

/// Classifies an answer to a batch of `lines`.
pub fn classify(response: &WriteResponse, lines: &[&str]) -> Verdict {
    match response.status {
        200..=299 if response.body.trim().is_empty() => Verdict::Delivered,
        200..=299 => Verdict::NotAcknowledged,
        400 | 422 => {
            let mut named = rejected_lines(&response.body, lines);
            if named.is_empty() {
                named = conflicting_lines(&response.body, lines);
            }
            let about_data = DATA_ERRORS
                .iter()
                .any(|phrase| response.body.to_ascii_lowercase().contains(phrase));
            if !named.is_empty() {
                Verdict::Rejected(named)
            } else if about_data {
                Verdict::RejectedUnknown
            } else {
                Verdict::RequestRefused
            }
        }
        401 | 403 | 404 => Verdict::Unauthorized,
        413 => Verdict::TooLarge,
        429 | 503 => Verdict::Throttled(
            response
                .retry_after
                .as_deref()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(|s| Duration::from_secs(s).min(MAX_RETRY_AFTER)),
        ),
        _ => Verdict::Failed,
    }
}

/// Lines quoted in `unable to parse '…'` messages (InfluxDB 1.x and 2.x both quote the line).
fn rejected_lines(body: &str, lines: &[&str]) -> Vec<usize> {
    let mut found = Vec::new();
    let marker = "unable to parse '";
    let mut rest = body;
    while let Some(start) = rest.find(marker) {
        rest = &rest[start + marker.len()..];
        // The quoted line ends at "': " (JSON bodies may escape quotes inside it).
        let end = rest.find("': ").unwrap_or(rest.len());
        let quoted = rest[..end].replace("\\\"", "\"").replace("\\\\", "\\");
        if let Some(index) = lines.iter().position(|l| *l == quoted) {
            if !found.contains(&index) {
                found.push(index);
            }
        }
        rest = &rest[end..];
    }
    found.sort_unstable();
    found
}

/// Lines that carry the field of a `field type conflict: input field "F" on measurement "M" is
/// type T, already exists as type U` message with type T: InfluxDB names the conflict, not the
/// line, and bisecting for it would cost a request per halving.
fn conflicting_lines(body: &str, lines: &[&str]) -> Vec<usize> {
    let body = body.replace("\\\"", "\"");
    let mut found = Vec::new();
    let mut rest = body.as_str();
    while let Some(start) = rest.find("input field \"") {
        rest = &rest[start + "input field \"".len()..];
        let Some((field, after)) = rest.split_once("\" on measurement \"") else {
            break;
        };
        let Some((measurement, after)) = after.split_once("\" is type ") else {
            break;
        };
        let kind = after
            .split(|c: char| !c.is_ascii_alphanumeric())
            .next()
            .unwrap_or_default();
        for (index, line) in lines.iter().enumerate() {
            let conflicts = crate::line_protocol::parse_line(line).is_some_and(|parsed| {
                parsed.measurement == measurement
                    && parsed
                        .fields
                        .iter()
                        .any(|(name, value_kind)| *name == field && *value_kind == kind)
            });
            if conflicts && !found.contains(&index) {
                found.push(index);
            }
        }
        rest = after;
    }
    found.sort_unstable();
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, retry_after: Option<&str>, body: &str) -> WriteResponse {
        WriteResponse {
            status,
            retry_after: retry_after.map(str::to_string),
            body: body.to_string(),
        }
    }

    const LINES: [&str; 3] = ["m a=1 1", "m a=oops 2", "m a=3 3"];

    #[test]
    fn success_statuses_deliver() {
        assert_eq!(classify(&answer(204, None, ""), &LINES), Verdict::Delivered);
        assert_eq!(classify(&answer(200, None, ""), &LINES), Verdict::Delivered);
    }

    #[test]
    fn a_success_status_with_a_page_is_not_an_acknowledgement() {
        let portal = "<html><body>请登录 Wi-Fi</body></html>";
        assert_eq!(
            classify(&answer(200, None, portal), &LINES),
            Verdict::NotAcknowledged
        );
        assert_eq!(
            classify(&answer(202, None, "{\"ok\":true}"), &LINES),
            Verdict::NotAcknowledged
        );
        assert_eq!(
            classify(&answer(200, None, "\n"), &LINES),
            Verdict::Delivered
        );
    }

    #[test]
    fn a_bad_request_that_says_nothing_about_the_data_is_a_request_failure() {
        for body in [
            "",
            "<html><head><title>400 Bad Request</title></head></html>",
            r#"{"error":"gzip: invalid header"}"#,
        ] {
            assert_eq!(
                classify(&answer(400, None, body), &LINES),
                Verdict::RequestRefused,
                "{body}"
            );
        }
    }

    #[test]
    fn a_field_type_conflict_names_the_lines_that_carry_the_field_with_that_type() {
        let lines = [
            "m,device=a a=1i 1",
            "m,device=b a=2.5 2",
            "other a=3i 3",
            "m,device=c b=1i,a=4i 4",
        ];
        let body = r#"{"error":"partial write: field type conflict: input field \"a\" on measurement \"m\" is type integer, already exists as type float dropped=2"}"#;
        assert_eq!(
            classify(&answer(400, None, body), &lines),
            Verdict::Rejected(vec![0, 3])
        );
    }

    #[test]
    fn bad_request_names_the_rejected_lines_of_influxdb_1() {
        let body =
            r#"{"error":"partial write: unable to parse 'm a=oops 2': invalid boolean dropped=0"}"#;
        assert_eq!(
            classify(&answer(400, None, body), &LINES),
            Verdict::Rejected(vec![1])
        );
    }

    #[test]
    fn unprocessable_entity_from_influxdb_2_names_the_rejected_lines() {
        let body = r#"{"code":"invalid","message":"partial write error (2 written): unable to parse 'm a=oops 2': invalid field format"}"#;
        assert_eq!(
            classify(&answer(422, None, body), &LINES),
            Verdict::Rejected(vec![1])
        );
    }

    #[test]
    fn a_rejection_that_names_no_line_is_bisected() {
        let body = r#"{"error":"partial write: field type conflict: input field \"a\" is type float, already exists as type integer dropped=1"}"#;
        assert_eq!(
            classify(&answer(400, None, body), &LINES),
            Verdict::RejectedUnknown
        );
    }

    #[test]
    fn credentials_and_missing_buckets_keep_the_data() {
        for status in [401, 403, 404] {
            assert_eq!(
                classify(&answer(status, None, ""), &LINES),
                Verdict::Unauthorized
            );
        }
    }

    #[test]
    fn too_large_is_split() {
        assert_eq!(classify(&answer(413, None, ""), &LINES), Verdict::TooLarge);
    }

    #[test]
    fn throttling_honours_retry_after_up_to_ten_minutes() {
        assert_eq!(
            classify(&answer(429, Some("30"), ""), &LINES),
            Verdict::Throttled(Some(Duration::from_secs(30)))
        );
        assert_eq!(
            classify(&answer(503, Some("86400"), ""), &LINES),
            Verdict::Throttled(Some(MAX_RETRY_AFTER))
        );
        assert_eq!(
            classify(
                &answer(503, Some("Wed, 21 Oct 2015 07:28:00 GMT"), ""),
                &LINES
            ),
            Verdict::Throttled(None)
        );
    }

    #[test]
    fn other_answers_are_retried() {
        for status in [500, 502, 504, 405, 408, 301] {
            assert_eq!(
                classify(&answer(status, None, ""), &LINES),
                Verdict::Failed,
                "{status}"
            );
        }
    }
}
