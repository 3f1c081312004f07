//! Alarm webhooks against a scripted local HTTP server that records requests: the WeCom and
//! DingTalk message shapes (three lines of Chinese markdown: what happened where, the fault bit
//! since when, what to do; the clear with how long it lasted), DingTalk
//! signing, a retry after a 500 and after a robot's error code, and an alarm raised while the
//! robot is unreachable delivered after a restart from the outbox.

mod common;

use std::path::Path;
use std::time::Duration;

use common::http_script::{status, Answer, Request, ScriptedServer};
use common::pump_alarms::{config, fault, outbox_holds_an_alarm, raise};

const OK: &str = r#"{"errcode":0,"errmsg":"ok"}"#;

fn accepted() -> Answer {
    Answer::Status(200, Vec::new(), OK.into())
}

fn webhook(dir: &Path, name: &str, kind: &str, url: &str, secret: Option<&str>) -> String {
    let url_file = dir.join(format!("{name}.url"));
    std::fs::write(&url_file, url).expect("url file");
    let mut text = format!(
        "[[alarms.webhook]]\nname = \"{name}\"\nkind = \"{kind}\"\nurl_file = {url_file:?}\n"
    );
    if let Some(secret) = secret {
        let secret_file = dir.join(format!("{name}.secret"));
        std::fs::write(&secret_file, secret).expect("secret file");
        text.push_str(&format!("secret_file = {secret_file:?}\n"));
    }
    text
}

fn json(request: &Request) -> serde_json::Value {
    serde_json::from_str(&request.body).expect("a JSON body")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wecom_and_dingtalk_get_chinese_markdown_and_dingtalk_is_signed() {
    let wecom = ScriptedServer::start(|_, _| accepted()).await;
    let dingtalk = ScriptedServer::start(|_, _| accepted()).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let hooks = format!(
        "{}{}",
        webhook(
            dir.path(),
            "wecom",
            "wecom",
            &format!("{}/cgi-bin/webhook/send?key=abc", wecom.url()),
            None
        ),
        webhook(
            dir.path(),
            "ding",
            "dingtalk",
            &format!("{}/robot/send?access_token=xyz", dingtalk.url()),
            Some("SECabc")
        )
    );
    let config = config(dir.path(), &hooks);
    let alarms = raise(&config, &[fault(1, 0), fault(0, 1_000_000_000)], || {
        wecom.recorded().len() >= 2 && dingtalk.recorded().len() >= 2
    })
    .await;
    alarms.shutdown(Duration::from_secs(2)).await;

    let sent = wecom.recorded();
    let raised = json(&sent[0]);
    assert_eq!(raised["msgtype"], "markdown");
    // Three lines for a phone: what happened where, the fault bit since when, what to do.
    assert_eq!(
        raised["markdown"]["content"],
        "**【严重】幸福小区 高区加压泵房：水泵故障**\n1号泵变频器故障（11-26 17:40起）\n通知水泵维保单位到场检修。"
    );
    assert_eq!(
        json(&sent[1])["markdown"]["content"],
        "**【已恢复】幸福小区 高区加压泵房：水泵故障**\n已恢复正常（11-26 17:40起，持续1秒，11-26 17:40恢复）"
    );

    let request = &dingtalk.recorded()[0];
    let body = json(request);
    assert_eq!(body["msgtype"], "markdown");
    assert!(body["markdown"]["title"]
        .as_str()
        .unwrap_or("")
        .contains("幸福小区 高区加压泵房：水泵故障"));
    // The signature: base64(HMAC-SHA256(secret, timestamp + "\n" + secret)), URL-encoded.
    let query = request.target.split_once('?').map(|(_, q)| q).unwrap_or("");
    let param = |name: &str| {
        query
            .split('&')
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("no {name} in {query}"))
            .to_string()
    };
    assert_eq!(param("access_token"), "xyz");
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"SECabc");
    let tag = ring::hmac::sign(&key, format!("{}\nSECabc", param("timestamp")).as_bytes());
    let expected = retrofit_gateway::sinks::influx::write::encode_query(
        &retrofit_gateway::secret::base64(tag.as_ref()),
    );
    assert_eq!(param("sign"), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_500_and_a_robot_error_code_are_retried_until_accepted() {
    let robot = ScriptedServer::start(|n, _| match n {
        0 => status(500),
        1 => Answer::Status(
            200,
            Vec::new(),
            r#"{"errcode":45009,"errmsg":"api freq out of limit"}"#.into(),
        ),
        _ => accepted(),
    })
    .await;
    let dir = tempfile::tempdir().expect("temp dir");
    let hooks = webhook(dir.path(), "wecom", "wecom", &robot.url(), None);
    let config = config(dir.path(), &hooks);
    let alarms = raise(&config, &[fault(2, 0)], || robot.recorded().len() >= 3).await;
    alarms.shutdown(Duration::from_secs(2)).await;
    let sent = robot.recorded();
    assert_eq!(sent.len(), 3, "delivered once accepted, not again");
    assert_eq!(sent[0].body, sent[2].body, "the same alarm each time");
    assert!(
        sent[1].at - sent[0].at >= Duration::from_millis(500),
        "backed off"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alarm_raised_while_the_robot_is_unreachable_is_delivered_after_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a port");
    // First run: the robot's address refuses connections.
    let hooks = webhook(
        dir.path(),
        "wecom",
        "wecom",
        &format!("http://{closed}/send"),
        None,
    );
    let config_down = config(dir.path(), &hooks);
    // Stop once the alarm is durable in the webhook's outbox.
    let alarms = raise(&config_down, &[fault(1, 0)], || {
        outbox_holds_an_alarm(&config_down, "webhook-wecom")
    })
    .await;
    alarms.shutdown(Duration::from_secs(2)).await;
    // Second run, same data directory: the robot is back; nothing new is raised.
    let robot = ScriptedServer::start(|_, _| accepted()).await;
    let hooks = webhook(dir.path(), "wecom", "wecom", &robot.url(), None);
    let config_up = config(dir.path(), &hooks);
    let alarms = raise(&config_up, &[], || !robot.recorded().is_empty()).await;
    alarms.shutdown(Duration::from_secs(2)).await;
    let sent = robot.recorded();
    assert_eq!(sent.len(), 1);
    assert!(json(&sent[0])["markdown"]["content"]
        .as_str()
        .unwrap_or("")
        .contains("水泵故障"));
}
