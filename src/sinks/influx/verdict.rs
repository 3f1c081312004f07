//! What to do with InfluxDB's answer to a write: DESIGN.md's response table, as code.
//!
//! | answer | verdict |
//! |---|---|
//! | 2xx | [`Verdict::Delivered`]: acknowledge the batch |
//! | 400 / 422 naming the bad lines | [`Verdict::Rejected`]: those lines to the dead-letter file, resend the rest |
//! | 400 / 422 otherwise | [`Verdict::RejectedUnknown`]: bisect to find the bad lines |
//! | 401 / 403 / 404 | [`Verdict::Unauthorized`]: keep the data, back off to the cap, self-alarm |
//! | 413 | [`Verdict::TooLarge`]: split in half; a single line goes to the dead-letter file |
//! | 429 / 503 | [`Verdict::Throttled`]: wait max(Retry-After capped at 10 min, backoff) |
//! | other status, connect error, timeout | [`Verdict::Failed`]: backoff 1 s → 60 s, no attempt limit |
//!
//! Other 4xx answers (405, 408 …) are treated as failures and retried: keeping the data is the
//! safe side; the disk log bounds the total.

use std::time::Duration;

use super::write::WriteResponse;

/// Retry-After values beyond this are capped.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Delivered,
    /// Indices (into the batch) of the lines the server refused.
    Rejected(Vec<usize>),
    RejectedUnknown,
    Unauthorized,
    TooLarge,
    Throttled(Option<Duration>),
    Failed,
}

/// Classifies an answer to a batch of `lines`.
pub fn classify(response: &WriteResponse, lines: &[&str]) -> Verdict {
    match response.status {
        200..=299 => Verdict::Delivered,
        400 | 422 => {
            let named = rejected_lines(&response.body, lines);
            if named.is_empty() {
                Verdict::RejectedUnknown
            } else {
                Verdict::Rejected(named)
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
