// The status page: reads /api/status every 5 s and renders it. No framework, no CDN.
"use strict";

const STATE_LABELS = {
  online: "在线 online", degraded: "异常 degraded", offline: "离线 offline",
  unknown: "未知 unknown", published: "上报 published",
};
const SEVERITY_LABELS = { crit: "严重 crit", warn: "警告 warn", info: "提示 info" };

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  for (const c of children) node.append(c);
  return node;
}

function duration(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  if (seconds < 90) return `${seconds.toFixed(0)} s`;
  if (seconds < 5400) return `${(seconds / 60).toFixed(0)} min`;
  if (seconds < 172800) return `${(seconds / 3600).toFixed(1)} h`;
  return `${(seconds / 86400).toFixed(1)} d`;
}

function localTime(ns) {
  const at = new Date(ns / 1e6);
  const today = at.toDateString() === new Date().toDateString();
  return today
    ? at.toLocaleTimeString("zh-CN", { hour12: false })
    : at.toLocaleString("zh-CN", { hour12: false });
}

function values(obj) {
  if (!obj) return "—";
  return Object.entries(obj)
    .map(([k, v]) => `${k}=${typeof v === "number" ? +v.toFixed(3) : v}`)
    .join("  ");
}

function bytes(n) {
  if (n < 1 << 20) return `${(n / 1024).toFixed(0)} KiB`;
  return `${(n / (1 << 20)).toFixed(1)} MiB`;
}

function render(s) {
  document.getElementById("site").textContent = s.gateway.site;
  document.getElementById("gateway").textContent = `${s.gateway.id} (v${s.gateway.version})`;
  document.getElementById("uptime").textContent = `运行 up ${duration(s.gateway.uptime_s)}`;
  document.getElementById("clock").hidden = s.gateway.clock_synchronised !== false;
  // The badge says the worst of what is wrong: the gateway itself, then alarms by severity.
  const count = (severity) => s.alarms.filter((a) => a.severity === severity).length;
  const [crit, warn, info] = [count("crit"), count("warn"), count("info")];
  const badge = document.getElementById("health");
  const words = [];
  if (!s.healthy) words.push("网关故障 PROBLEM");
  if (crit) words.push(`严重报警 ${crit}`);
  if (warn) words.push(`警告 ${warn}`);
  if (info && !words.length) words.push(`提示 ${info}`);
  badge.textContent = words.length ? words.join(" · ") : "正常 OK";
  badge.className = "badge " + (!s.healthy || crit ? "bad" : warn ? "warn" : "ok");

  const problems = document.getElementById("problems");
  problems.replaceChildren(...s.problems.map((p) => el("li", {}, `${p.part}: ${p.problem}`)));
  document.getElementById("problems-box").hidden = s.problems.length === 0;

  const alarms = document.getElementById("alarms");
  alarms.replaceChildren(...s.alarms.map((a) => el("tr", {},
    el("td", {}, el("span", { class: `sev-${a.severity}` }, SEVERITY_LABELS[a.severity] || a.severity)),
    el("td", {}, a.place || a.device, el("div", { class: "quiet" }, a.device)),
    el("td", {}, (a.title || a.rule) + (a.flapping ? "（反复 flapping）" : ""),
      el("div", { class: "quiet" }, a.requirement ? `${a.rule} · ${a.requirement}` : a.rule)),
    el("td", {}, localTime(a.since_ns)))));
  document.getElementById("no-alarms").hidden = s.alarms.length > 0;
  document.getElementById("alarm-count").textContent = s.alarms.length ? `(${s.alarms.length})` : "";

  const devices = document.getElementById("devices");
  devices.replaceChildren(...s.devices.map((d) => el("tr", {},
    el("td", {}, d.id, el("div", { class: "quiet" }, d.measurement + (d.bus ? ` · ${d.bus}` : " · MQTT")),
      el("div", { class: "values values-inline" }, values(d.values))),
    el("td", { class: `state-${d.state}` }, STATE_LABELS[d.state] || d.state,
      ...(d.adapted ? [el("div", { class: "quiet" }, `自适应读取：${d.adapted}`)] : [])),
    el("td", {}, duration(d.last_sample_age_s)),
    el("td", { class: "values" }, values(d.values)))));

  const backlog = document.getElementById("backlog");
  const rows = [];
  if (s.log && s.log.busy) {
    rows.push(["本地缓存 Disk log", "正在写入，稍后刷新 — busy writing, shown at the next refresh"]);
  } else if (s.log) {
    rows.push(["本地缓存 Disk log", `${bytes(s.log.bytes)} / ${bytes(s.log.max_bytes)}`]);
    rows.push(["待上传 Unsent readings", String(s.log.pending_records)]);
    rows.push(["最早未上传 Oldest unsent", duration(s.log.oldest_unsent_age_s)]);
  } else {
    rows.push(["本地缓存 Disk log", "未配置 InfluxDB — not forwarding"]);
  }
  if (s.mqtt) {
    rows.push(["MQTT 消息 messages", `${s.mqtt.messages} (${s.mqtt.connections} connections)`]);
  }
  backlog.replaceChildren(...rows.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
  document.getElementById("updated").textContent = `更新 updated ${new Date().toLocaleTimeString("zh-CN", { hour12: false })}`;
}

async function refresh() {
  try {
    const response = await fetch("/api/status", { cache: "no-store" });
    render(await response.json());
  } catch (e) {
    const badge = document.getElementById("health");
    badge.textContent = "无法连接 unreachable";
    badge.className = "badge bad";
  }
}

refresh();
setInterval(refresh, 5000);
