//! The report as one HTML page, Chinese with English labels: no scripts, fonts or images from
//! elsewhere (charts are inline SVG), laid out to print on A4 from a browser.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::kpi::{Definition, DEFINITIONS};

use super::notes::ReportNotes;
use super::{Figure, MonthReport, TRUSTED_COMPLETENESS_PCT};

/// KPIs shown in their own sections rather than in the summary.
const OWN_SECTIONS: [&str; 5] = [
    "completeness",
    "availability",
    "gateway_uptime",
    "alarm_raises",
    "alarm_clear_time",
];

/// Notable alarms listed at most.
const NOTABLE_LISTED: usize = 40;

const STYLE: &str = r#"
body { font-family: "WenQuanYi Micro Hei", "Noto Sans CJK SC", "Microsoft YaHei", "DejaVu Sans", sans-serif; margin: 24px auto; max-width: 1000px; color: #1d2733; font-size: 13px; }
h1 { font-size: 22px; margin: 0 0 4px; } h1 small, h2 small, th small { font-weight: normal; color: #5b6b7c; }
h2 { font-size: 16px; border-bottom: 2px solid #1f6fb2; padding-bottom: 3px; margin-top: 28px; }
.meta { color: #5b6b7c; margin: 0 0 12px; }
table { border-collapse: collapse; width: 100%; margin: 8px 0; }
th, td { border: 1px solid #d3dbe4; padding: 4px 6px; text-align: left; vertical-align: top; }
th { background: #eef3f8; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.met { color: #1b7f3b; font-weight: bold; } .missed { color: #b3261e; font-weight: bold; } .none { color: #5b6b7c; }
.warn { color: #9a6700; }
.chart { display: inline-block; width: 48%; margin: 4px 1% 10px 0; vertical-align: top; }
.chart p { margin: 2px 0; font-weight: bold; }
.note { color: #5b6b7c; font-size: 12px; }
dt { font-weight: bold; margin-top: 6px; } dd { margin: 2px 0 0 16px; }
@media print { body { margin: 0; max-width: none; } h2 { break-after: avoid; } tr, .chart { break-inside: avoid; } }
@page { size: A4; margin: 14mm; }
"#;

/// HTML text with `<`, `>`, `&` and quotes escaped.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn number(value: f64, unit: &str) -> String {
    let digits = if value.abs() >= 100.0 || unit.is_empty() && value.fract() == 0.0 {
        0
    } else if value.abs() >= 10.0 {
        1
    } else {
        2
    };
    let unit = if unit == "%" || unit.is_empty() {
        unit.to_string()
    } else {
        format!(" {unit}")
    };
    format!("{value:.digits$}{unit}")
}

fn label(definition: &Definition) -> String {
    format!(
        "{}<br><small>{}</small>",
        escape(definition.zh),
        escape(definition.en)
    )
}

fn scope(figure: &Figure, notes: &ReportNotes) -> String {
    let place = escape(notes.place(&figure.device));
    match &figure.subject {
        Some(subject) => format!("{place} · {}", escape(subject)),
        None => place,
    }
}

fn target(definition: &Definition) -> String {
    match definition.target {
        Some(t) => format!("{} {}", t.symbol(), number(t.value(), definition.unit)),
        None => "—".into(),
    }
}

fn verdict(figure: &Figure) -> String {
    match figure.met() {
        Some(true) => "<span class=\"met\">达标 met</span>".into(),
        Some(false) => "<span class=\"missed\">未达标 not met</span>".into(),
        None => "<span class=\"none\">—</span>".into(),
    }
}

fn trust(figure: &Figure) -> String {
    match figure.completeness {
        Some(c) if c < TRUSTED_COMPLETENESS_PCT => format!(
            "<span class=\"warn\">⚠ {} 数据不全 incomplete</span>",
            number(c, "%")
        ),
        Some(c) => number(c, "%"),
        None => "—".into(),
    }
}

/// One line of a chart: its name, colour and (day of month, value) points.
type Series<'a> = (&'a str, &'a str, Vec<(usize, f64)>);

/// One rule's alarms over the month.
#[derive(Default)]
struct RuleAlarms {
    raises: f64,
    devices: Vec<String>,
    clear_s: f64,
    clears: f64,
}

/// A line chart of daily values (day of month on x), with the target as a dashed line.
fn chart(
    title: &str,
    unit: &str,
    series: &[Series<'_>],
    target: Option<f64>,
    days: usize,
) -> String {
    let (w, h, bottom) = (460.0, 150.0, 20.0);
    let values = series
        .iter()
        .flat_map(|(_, _, points)| points.iter().map(|(_, v)| *v))
        .chain(target);
    let (mut low, mut high) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| {
        (l.min(v), h.max(v))
    });
    if !low.is_finite() {
        return String::new();
    }
    if (high - low).abs() < 1e-9 {
        low -= 1.0;
        high += 1.0;
    }
    let pad = (high - low) * 0.1;
    // The axis labels are numbers only (the unit is in the title); the plot starts right of
    // the longest, at about 6 px a character of the 10 px font.
    let labels = [
        number(low, unit_of_axis(unit)),
        number(high, unit_of_axis(unit)),
    ];
    let widest = labels.iter().map(|l| l.chars().count()).max().unwrap_or(1);
    let left = 8.0 + 6.0 * widest as f64;
    let (low, high) = (low - pad, high + pad);
    let x = |day: usize| left + (w - left - 6.0) * (day as f64 - 1.0) / (days.max(2) as f64 - 1.0);
    let y = |v: f64| (h - bottom) - (h - bottom - 6.0) * (v - low) / (high - low);
    let mut svg = format!(
        "<div class=\"chart\"><p>{}</p><svg viewBox=\"0 0 {w} {h}\" width=\"100%\" role=\"img\" aria-label=\"{}\">",
        escape(title),
        escape(title)
    );
    let _ = write!(
        svg,
        "<line x1=\"{left}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#9aa7b4\"/>",
        h - bottom,
        w - 6.0,
        h - bottom
    );
    for v in [low + pad, high - pad] {
        let _ = write!(
            svg,
            "<text x=\"{}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"end\" fill=\"#5b6b7c\">{}</text>",
            left - 4.0,
            y(v) + 3.0,
            escape(&number(v, unit_of_axis(unit)))
        );
    }
    for day in [1, days.div_ceil(2), days] {
        let _ = write!(
            svg,
            "<text x=\"{:.1}\" y=\"{}\" font-size=\"10\" text-anchor=\"middle\" fill=\"#5b6b7c\">{day}</text>",
            x(day),
            h - 6.0
        );
    }
    if let Some(t) = target {
        let _ = write!(
            svg,
            "<line x1=\"{left}\" y1=\"{:.1}\" x2=\"{}\" y2=\"{:.1}\" stroke=\"#b3261e\" stroke-dasharray=\"4 3\"/>",
            y(t),
            w - 6.0,
            y(t)
        );
    }
    for (name, colour, points) in series {
        let path: Vec<String> = points
            .iter()
            .map(|(d, v)| format!("{:.1},{:.1}", x(*d), y(*v)))
            .collect();
        let _ = write!(
            svg,
            "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"1.8\" points=\"{}\"><title>{}</title></polyline>",
            path.join(" "),
            escape(name)
        );
        for (d, v) in points {
            let _ = write!(
                svg,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"1.8\" fill=\"{colour}\"/>",
                x(*d),
                y(*v)
            );
        }
    }
    svg.push_str("</svg></div>");
    svg
}

/// What an axis label carries of `unit`: a percent sign, nothing else (the title has it).
fn unit_of_axis(unit: &str) -> &str {
    if unit == "%" {
        unit
    } else {
        ""
    }
}

fn day_of_month(date: &str) -> Option<usize> {
    date.get(8..10)?.parse().ok()
}

/// A KPI's figures with one row per device: where a device has several (phases), the one
/// that met the target least, with how many there were.
fn worst_subject_per_device<'a>(
    report: &'a MonthReport,
    definition: &Definition,
) -> Vec<(&'a Figure, usize)> {
    let mut rows: Vec<(&Figure, usize)> = Vec::new();
    for figure in report.of(definition.name) {
        match rows.iter_mut().find(|(f, _)| f.device == figure.device) {
            Some((kept, count)) => {
                *count += 1;
                let worse = match definition.target {
                    Some(crate::kpi::Target::AtMost(_)) => figure.value > kept.value,
                    _ => figure.value < kept.value,
                };
                if worse {
                    *kept = figure;
                }
            }
            None => rows.push((figure, 1)),
        }
    }
    rows
}

/// Per day, the worst value of a KPI's figures (the lowest against an at-least target).
fn worst_per_day(figures: &[&Figure], at_least: bool) -> Vec<(usize, f64)> {
    let mut days: BTreeMap<usize, f64> = BTreeMap::new();
    for figure in figures {
        for (date, v) in &figure.daily {
            let Some(day) = day_of_month(date) else {
                continue;
            };
            let entry = days.entry(day).or_insert(*v);
            *entry = if at_least {
                entry.min(*v)
            } else {
                entry.max(*v)
            };
        }
    }
    days.into_iter().collect()
}

fn local_time(ns: i64) -> String {
    crate::calendar::local_time(ns, (super::UTC_OFFSET_H * 3600.0) as i64)
}

/// The page.
pub fn render(report: &MonthReport, notes: &ReportNotes, generated: &str) -> String {
    let mut out = String::new();
    let title = format!(
        "{} {} 月度运行报告 Monthly report",
        report.site, report.month
    );
    let _ = write!(
        out,
        "<!doctype html>\n<html lang=\"zh-CN\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{}</title><style>{STYLE}</style></head><body>",
        escape(&title)
    );
    let _ = write!(
        out,
        "<h1>{} · {} 月度运行报告 <small>Monthly community report</small></h1>",
        escape(&report.site),
        escape(&report.month)
    );
    let _ = write!(
        out,
        "<p class=\"meta\">网关 Gateway {} · 有数据天数 Days with data {}/{}{} · 生成 Generated {}</p>",
        escape(&report.gateway),
        report.days_with_data,
        report.days_in_month,
        if report.includes_open_day { "（含进行中的一天 includes today so far）" } else { "" },
        escape(generated)
    );
    if report.unreadable_lines > 0 {
        let _ = write!(
            out,
            "<p class=\"warn\">⚠ {} 行KPI记录无法读取，已跳过 lines of stored KPIs could not be read and were skipped.</p>",
            report.unreadable_lines
        );
    }
    if report.figures.is_empty() {
        out.push_str("<p>本月没有数据 No figures for this month.</p></body></html>\n");
        return out;
    }

    // Summary.
    out.push_str("<h2>达标概览 <small>Compliance against targets</small></h2><table><tr><th>指标 <small>KPI</small></th><th>对象 <small>Scope</small></th><th>本月 <small>Month</small></th><th>目标 <small>Target</small></th><th>结论 <small>Verdict</small></th><th>最差日 <small>Worst days</small></th><th>数据完整率 <small>Data</small></th></tr>");
    for definition in DEFINITIONS
        .iter()
        .filter(|d| !OWN_SECTIONS.contains(&d.name))
    {
        for (figure, phases) in worst_subject_per_device(report, definition) {
            let worst: Vec<String> = figure
                .worst_days(3)
                .iter()
                .map(|(date, v)| {
                    format!(
                        "{} {}",
                        escape(date.get(5..).unwrap_or(date)),
                        number(*v, definition.unit)
                    )
                })
                .collect();
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td></tr>",
                label(definition),
                if phases > 1 {
                    format!(
                        "{}<br><small>最差相 worst of {phases}</small>",
                        scope(figure, notes)
                    )
                } else {
                    scope(figure, notes)
                },
                number(figure.value, definition.unit),
                target(definition),
                verdict(figure),
                if worst.is_empty() { "—".into() } else { worst.join("<br>") },
                trust(figure)
            );
        }
    }
    out.push_str("</table>");

    // Trends.
    out.push_str(
        "<h2>每日趋势 <small>Daily trends (each day's worst device; dashed: target)</small></h2>",
    );
    let palette = ["#1f6fb2", "#d9822b", "#2e8540", "#7b4fa3"];
    for definition in DEFINITIONS
        .iter()
        .filter(|d| !OWN_SECTIONS.contains(&d.name))
    {
        let figures: Vec<&Figure> = report.of(definition.name).collect();
        let counted = definition.aggregate == crate::kpi::Aggregate::Sum;
        if figures.is_empty() || counted || definition.name == "mnf_baseline" {
            continue;
        }
        let at_least = !matches!(definition.target, Some(crate::kpi::Target::AtMost(_)));
        let title =
            format!("{} {} ({})", definition.zh, definition.en, definition.unit).replace(" ()", "");
        let mut series = vec![("worst", palette[0], worst_per_day(&figures, at_least))];
        if definition.name == "mnf" {
            let baseline: Vec<&Figure> = report.of("mnf_baseline").collect();
            series[0].0 = "MNF";
            series.push(("baseline", palette[1], worst_per_day(&baseline, false)));
        }
        out.push_str(&chart(
            &title,
            definition.unit,
            &series,
            definition.target.map(|t| t.value()),
            report.days_in_month,
        ));
    }

    let alarm_rules = alarms(&mut out, report, notes);

    // Data.
    let _ = write!(out, "<h2>数据完整性 <small>Data completeness: how far to trust each figure (⚠ below {TRUSTED_COMPLETENESS_PCT:.0} %)</small></h2><table><tr><th>设备 <small>Device</small></th><th>数据完整率 <small>Completeness</small></th><th>在线率 <small>Availability</small></th></tr>");
    let availability: BTreeMap<&str, f64> = report
        .of("availability")
        .map(|f| (f.device.as_str(), f.value))
        .collect();
    for figure in report.of("completeness") {
        let _ = write!(
            out,
            "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            escape(notes.place(&figure.device)),
            trust(figure),
            availability
                .get(figure.device.as_str())
                .map_or("—".into(), |a| number(*a, "%"))
        );
    }
    for figure in report.of("gateway_uptime") {
        let _ = write!(out, "<tr><td>网关运行率 Gateway uptime ({})</td><td class=\"num\" colspan=\"2\">{}</td></tr>", escape(&figure.device), number(figure.value, "%"));
    }
    out.push_str("</table>");

    // Definitions.
    out.push_str("<h2>指标定义 <small>Definitions</small></h2><dl>");
    for definition in DEFINITIONS {
        if report.of(definition.name).next().is_none() {
            continue;
        }
        let _ = write!(
            out,
            "<dt>{} · {}</dt><dd>{}{}</dd>",
            escape(definition.zh),
            escape(definition.en),
            escape(definition.definition),
            if definition.source.is_empty() {
                String::new()
            } else {
                format!(
                    " <span class=\"note\">— {}</span>",
                    escape(definition.source)
                )
            }
        );
    }
    out.push_str("</dl>");
    rule_sources(&mut out, &alarm_rules, notes);
    out.push_str("<p class=\"note\">月度数值由每日计数汇总（比率为Σ合格/Σ总数），非每日比率的平均。Monthly figures are made from the days' counts (a rate is Σ inside / Σ total), not by averaging daily rates; a 95th percentile is the worst day's.</p></body></html>\n");
    out
}

/// The alarm section: per rule (its title, how often, on which devices, how long to clear),
/// how many incidents the robots were told of, and the notable alarms. Returns the rules seen.
fn alarms(out: &mut String, report: &MonthReport, notes: &ReportNotes) -> Vec<String> {
    out.push_str("<h2>报警 <small>Alarms</small></h2>");
    let raised: f64 = report.of("alarm_raises").map(|f| f.value).sum();
    let incidents: f64 = report.of("incidents").map(|f| f.value).sum();
    if raised > 0.0 {
        let _ = write!(
            out,
            "<p>本月报警 {raised:.0} 次，归为 {incidents:.0} 起事件通知物业（同一上游设备引起的报警只通知一次）。<small>{raised:.0} alarms in {incidents:.0} incidents notified: alarms with one root count once.</small></p>"
        );
    }
    out.push_str("<table><tr><th>规则 <small>Rule</small></th><th>级别 <small>Severity</small></th><th>次数 <small>Raised</small></th><th>设备 <small>Devices</small></th><th>平均恢复时间 <small>Mean time to clear</small></th></tr>");
    let mut by_rule: BTreeMap<(String, String), RuleAlarms> = BTreeMap::new();
    let key_of = |figure: &Figure| {
        (
            figure.subject.clone().unwrap_or_default(),
            figure.severity.clone().unwrap_or_default(),
        )
    };
    for figure in report.of("alarm_raises") {
        let entry = by_rule.entry(key_of(figure)).or_default();
        entry.raises += figure.value;
        entry.devices.push(notes.place(&figure.device).to_string());
    }
    for figure in report.of("alarm_clear_time") {
        let entry = by_rule.entry(key_of(figure)).or_default();
        entry.clear_s += figure.value * figure.basis;
        entry.clears += figure.basis;
    }
    if by_rule.is_empty() {
        out.push_str("<tr><td colspan=\"5\">本月无报警 No alarms this month</td></tr>");
    }
    let mut seen: Vec<String> = by_rule.keys().map(|(rule, _)| rule.clone()).collect();
    let mut rules: Vec<_> = by_rule.into_iter().collect();
    rules.sort_by_key(|((rule, severity), _)| (severity_rank(severity), rule.clone()));
    for ((rule, severity), alarms) in rules {
        let mean = if alarms.clears > 0.0 {
            format_duration(alarms.clear_s / alarms.clears)
        } else {
            "—".into()
        };
        let (raises, devices) = (alarms.raises, alarms.devices);
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td class=\"num\">{raises:.0}</td><td>{}</td><td class=\"num\">{mean}</td></tr>",
            rule_cell(&rule, notes),
            escape(&severity),
            escape(&devices.join("、"))
        );
    }
    out.push_str("</table>");
    let mut notable = report.notable.clone();
    notable.sort_by_key(|n| (severity_rank(&n.severity), n.raised_ns));
    if !notable.is_empty() {
        let _ = write!(out, "<h3>需要关注的报警 <small>The alarms that mattered (crit first; {} of {})</small></h3>", notable.len().min(NOTABLE_LISTED), notable.len());
        out.push_str("<table><tr><th>发生 <small>Raised</small></th><th>设备 <small>Device</small></th><th>规则 <small>Rule</small></th><th>级别</th><th>持续 <small>Lasted</small></th><th>内容 <small>Message</small></th></tr>");
        for n in notable.iter().take(NOTABLE_LISTED) {
            let lasted = n
                .cleared_ns
                .map(|c| format_duration((c - n.raised_ns) as f64 / 1e9))
                .unwrap_or_else(|| "未恢复 not cleared".into());
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
                escape(&local_time(n.raised_ns)),
                escape(notes.place(&n.device)),
                escape(&n.rule),
                escape(&n.severity),
                escape(&lasted),
                escape(&n.message)
            );
            seen.push(n.rule.clone());
        }
        out.push_str("</table>");
    }
    seen.sort();
    seen.dedup();
    seen
}

fn severity_rank(severity: &str) -> u8 {
    match severity {
        "crit" => 0,
        "warn" => 1,
        _ => 2,
    }
}

/// `W20` with the rule's title beneath it.
fn rule_cell(rule: &str, notes: &ReportNotes) -> String {
    match notes.rule(rule) {
        Some(note) => format!("{}<br><small>{}</small>", escape(rule), escape(&note.title)),
        None => escape(rule),
    }
}

/// The appendix: for each rule that raised this month, what the plan requires and where the
/// number comes from.
fn rule_sources(out: &mut String, rules: &[String], notes: &ReportNotes) {
    let noted: Vec<(&String, &super::notes::RuleNote)> = rules
        .iter()
        .filter_map(|rule| Some((rule, notes.rule(rule)?)))
        .collect();
    if noted.is_empty() {
        return;
    }
    out.push_str("<h2>附录：报警规则依据 <small>Appendix: what each rule that raised this month checks, and where its number comes from</small></h2><table><tr><th>规则 <small>Rule</small></th><th>要求 <small>Requirement</small></th><th>依据 <small>Source</small></th></tr>");
    for (rule, note) in noted {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td class=\"note\">{}</td></tr>",
            rule_cell(rule, notes),
            escape(&note.requirement),
            escape(&note.source)
        );
    }
    out.push_str("</table>");
}

fn format_duration(seconds: f64) -> String {
    let s = seconds.round() as i64;
    if s >= 3600 {
        format!("{} h {:02} min", s / 3600, s % 3600 / 60)
    } else if s >= 60 {
        format!("{} min", s / 60)
    } else {
        format!("{s} s")
    }
}

#[cfg(test)]
mod chart_tests {
    use super::*;

    /// Each y-axis label (right-aligned at its x) and its characters at ~6 px each.
    fn axis_labels(svg: &str) -> Vec<(f64, String)> {
        svg.split("<text ")
            .skip(1)
            .filter(|t| t.contains("text-anchor=\"end\""))
            .map(|t| {
                let x = t
                    .split("x=\"")
                    .nth(1)
                    .and_then(|r| r.split('"').next())
                    .and_then(|x| x.parse().ok())
                    .expect("an x");
                let text = t
                    .split('>')
                    .nth(1)
                    .and_then(|r| r.split('<').next())
                    .expect("a label");
                (x, text.to_string())
            })
            .collect()
    }

    #[test]
    fn axis_labels_fit_left_of_the_plot_whatever_their_length() {
        for (unit, values) in [
            ("m³/h", vec![(1, 12.345), (2, 1234.5)]),
            ("%", vec![(1, 99.5), (2, 100.0)]),
            ("MPa", vec![(1, 0.28), (2, 0.305)]),
        ] {
            let svg = chart("t", unit, &[("worst", "#000", values)], None, 31);
            let labels = axis_labels(&svg);
            assert_eq!(labels.len(), 2, "{svg}");
            for (x, text) in labels {
                assert!(!text.contains("m³") && !text.contains("MPa"), "{text}");
                assert!(
                    x >= 6.0 * text.chars().count() as f64,
                    "{text:?} right-aligned at {x} is cut off"
                );
            }
        }
    }
}
