//! The Chinese guide's alarm table (`docs/zh/alarms.md`, between its markers) is the shipped
//! rule packs' own words (title, what the plan requires, what to do), rendered here from the
//! packs `config/demo.toml` loads: the test fails when a pack changed and the page did not.
//! `RGW_UPDATE_GUIDE=1 cargo test --test guide` writes the table anew.

use std::path::Path;

use retrofit_gateway::config::rule_pack::RuleConfig;
use retrofit_gateway::config::{load, EnvOverlay};

const BEGIN: &str = "<!-- 以下表格由 tests/guide.rs 从规则包生成 -->\n";
const END: &str = "<!-- 表格结束 -->\n";

/// The chapter a rule belongs to, by the letter of its id.
fn chapter(rule: &RuleConfig) -> &'static str {
    match rule.id.chars().next() {
        Some('W') => "给水（水泵房、减压阀、管网、阀门井）",
        Some('E') => "供电（配电室、变压器、户表）",
        Some('H') => "供热（换热站、热量表、样板户）",
        Some('G') => "燃气（调压箱）",
        _ => "网关与通信",
    }
}

fn cell(text: &str) -> String {
    text.replace('|', "／").replace('\n', " ")
}

fn table(rules: &[RuleConfig]) -> String {
    let mut out = String::new();
    let mut current = "";
    for rule in rules {
        let heading = chapter(rule);
        if heading != current {
            current = heading;
            out.push_str(&format!(
                "\n### {heading}\n\n| 编号 | 级别 | 报警 | 方案要求 | 怎么处理 |\n|---|---|---|---|---|\n"
            ));
        }
        let severity = match rule.severity.name() {
            "crit" => "严重",
            "warn" => "警告",
            _ => "提示",
        };
        out.push_str(&format!(
            "| {} | {severity} | {} | {} | {} |\n",
            rule.key(),
            cell(rule.title.as_deref().unwrap_or(&rule.description)),
            cell(&rule.description),
            cell(rule.action.as_deref().unwrap_or("—")),
        ));
    }
    out
}

#[test]
fn the_alarm_guide_says_what_the_rule_packs_say() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config =
        load(&root.join("config/demo.toml"), EnvOverlay::None).unwrap_or_else(|e| panic!("{e}"));
    let mut rules = config.rules.clone();
    // W2 before W10: by chapter, then the number, then the variant.
    rules.sort_by_key(|r| {
        let order = "WEHGSX".find(r.id.chars().next().unwrap_or('X'));
        let number: u32 =
            r.id.chars()
                .filter(char::is_ascii_digit)
                .collect::<String>()
                .parse()
                .unwrap_or(0);
        (order, number, r.key())
    });
    let expected = table(&rules);
    let page = root.join("docs/zh/alarms.md");
    let text = std::fs::read_to_string(&page).expect("docs/zh/alarms.md");
    let (before, rest) = text.split_once(BEGIN).expect("the begin marker");
    let (current, after) = rest.split_once(END).expect("the end marker");
    if current != expected {
        if std::env::var_os("RGW_UPDATE_GUIDE").is_some() {
            std::fs::write(&page, format!("{before}{BEGIN}{expected}{END}{after}"))
                .expect("written");
            return;
        }
        panic!("docs/zh/alarms.md is behind the rule packs: run RGW_UPDATE_GUIDE=1 cargo test --test guide");
    }
    for rule in &rules {
        assert!(
            current.contains(&format!("| {} |", rule.key())),
            "{}",
            rule.key()
        );
    }
}

/// The configuration examples of `docs/zh/configure.md`, put together with the two buses and
/// the upstream meter they refer to, load and validate as one config.
#[test]
fn the_guides_configuration_examples_are_a_valid_config() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let page = std::fs::read_to_string(root.join("docs/zh/configure.md")).expect("the page");
    let mut text: String = page
        .split("```toml\n")
        .skip(1)
        .filter_map(|block| block.split("```").next())
        .collect::<Vec<_>>()
        .join("\n");
    let dir = tempfile::tempdir().expect("temp dir");
    text = text.replace(
        "data_dir = \"/var/lib/retrofit-gateway\"",
        &format!(
            "data_dir = {:?}\nprofile_dir = {:?}",
            dir.path().join("data"),
            root.join("config/profiles")
        ),
    );
    let rules = root.join("config/rules");
    text.push_str(&format!(
        "\n[[bus]]\nid = \"prv-chamber\"\ntransport = \"tcp\"\naddress = \"192.0.2.22:502\"\n\
         [[bus]]\nid = \"heat-meters\"\ntransport = \"rtu_over_tcp\"\naddress = \"192.0.2.26:4001\"\nbaud = 2400\nparity = \"even\"\n\
         [[device]]\nid = \"hv-meter\"\nbus = \"substation\"\nunit = 11\nprofile = \"acrel-dtsd1352\"\ninterval = \"2s\"\n\
         [alarms]\nrule_packs = [{:?}, {:?}, {:?}, {:?}, {:?}]\n",
        rules.join("water.toml"),
        rules.join("power.toml"),
        rules.join("heating.toml"),
        rules.join("gas.toml"),
        rules.join("gateway.toml"),
    ));
    let config = dir.path().join("gateway.toml");
    std::fs::write(&config, text).expect("written");
    let loaded = load(&config, EnvOverlay::None).unwrap_or_else(|e| panic!("{e}"));
    assert!(loaded.gateway.device.len() >= 8);
    assert!(loaded.gateway.mqtt_source.is_some());
}

/// Every relative link of the README and of `docs/` (the README was cut into `docs/`, and the
/// guide links its pages and pictures) names a file that exists.
#[test]
fn every_relative_link_in_the_documentation_resolves() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut pages = vec![root.join("README.md")];
    for dir in ["docs", "docs/zh"] {
        for entry in std::fs::read_dir(root.join(dir)).expect("docs") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|e| e == "md") {
                pages.push(path);
            }
        }
    }
    let mut links = 0;
    for page in &pages {
        let text = std::fs::read_to_string(page).expect("readable");
        for target in text
            .split("](")
            .skip(1)
            .filter_map(|rest| rest.split(')').next())
        {
            if target.starts_with("http") || target.starts_with('#') {
                continue;
            }
            let file = target.split('#').next().unwrap_or(target);
            let resolved = page.parent().expect("a directory").join(file);
            assert!(
                resolved.exists(),
                "{}: {target} does not exist",
                page.display()
            );
            links += 1;
        }
    }
    assert!(links > 10, "{links} links");
}
