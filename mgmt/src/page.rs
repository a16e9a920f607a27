//! The status page (`GET /`): targets, capacity, connected clients, throughput over time and
//! shard utilisation. One self-contained document (inline CSS and script, no fonts, images or
//! libraries fetched from anywhere): it renders on the server, then refreshes itself from
//! `/api/status` and `/api/history` every two seconds.

use crate::console::Status;
use std::fmt::Write as _;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn gib(kb: u64) -> String {
    format!("{:.1} GiB", kb as f64 / (1024.0 * 1024.0))
}

/// The target rows (also rebuilt by the page's script from the same fields).
fn target_rows(s: &Status) -> String {
    let mut o = String::new();
    for t in &s.targets {
        let used = t.kb_total.saturating_sub(t.kb_free);
        let pct = (used * 100).checked_div(t.kb_total).unwrap_or(0);
        let _ = write!(
            o,
            "<tr class=\"target\" data-target=\"{n}\"><td>{n}</td><td>{k}</td><td>{sz}</td>\
             <td><div class=\"bar\"><div style=\"width:{pct}%\"></div></div> {pct}%</td>\
             <td>{cl}</td><td>{st}</td></tr>",
            n = esc(&t.name),
            k = esc(&t.kind),
            sz = gib(t.kb_total),
            cl = t.exports,
            st = if t.readonly { "read-only" } else { "up" },
        );
    }
    o
}

fn shard_rows(s: &Status) -> String {
    let mut o = String::new();
    for sh in &s.shards {
        let _ = write!(
            o,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.1}</td><td>{}</td><td>{}</td></tr>",
            sh.id,
            sh.requests,
            sh.active,
            sh.busy_us as f64 / 1e6,
            sh.exports,
            sh.locks
        );
    }
    o
}

/// The page for status `s`.
#[must_use]
pub fn render(s: &Status) -> String {
    format!(
        r##"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Rustre {fs}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }}
h1 {{ font-size: 1.4em; }} h2 {{ font-size: 1.1em; margin-top: 1.5em; }}
table {{ border-collapse: collapse; }} td, th {{ padding: .25em .8em; border-bottom: 1px solid #ddd; text-align: left; }}
.bar {{ display: inline-block; width: 8em; height: .8em; background: #eee; vertical-align: middle; }}
.bar div {{ height: 100%; background: #3a7; }}
#health.bad {{ color: #c00; }}
svg {{ background: #fafafa; border: 1px solid #ddd; }}
</style></head>
<body>
<h1>Rustre <span id="fsname">{fs}</span></h1>
<p>Lustre {ver} &middot; NIDs <span id="nids">{nids}</span> &middot; up <span id="uptime">{up}</span> s &middot;
health: <span id="health" class="{hc}">{health}</span> &middot; memory <span id="mem">{mem}</span> MiB</p>
<h2>Targets</h2>
<table id="targets"><thead><tr><th>target</th><th>kind</th><th>size</th><th>used</th><th>clients</th><th>state</th></tr></thead>
<tbody id="target-rows">{rows}</tbody></table>
<h2>Throughput (MiB/s, last 5 minutes)</h2>
<svg id="tput" width="600" height="150" viewBox="0 0 600 150" role="img" aria-label="throughput">
<polyline id="tput-w" fill="none" stroke="#c33" stroke-width="1.5" points=""/>
<polyline id="tput-r" fill="none" stroke="#36c" stroke-width="1.5" points=""/></svg>
<p><span style="color:#c33">write</span> <span id="wrate">0.0</span> MiB/s &middot;
<span style="color:#36c">read</span> <span id="rrate">0.0</span> MiB/s</p>
<h2>Shards</h2>
<table id="shards"><thead><tr><th>shard</th><th>requests</th><th>queue</th><th>busy s</th><th>exports</th><th>locks</th></tr></thead>
<tbody id="shard-rows">{shards}</tbody></table>
<script>
"use strict";
const tok = new URLSearchParams(location.search).get("token");
const hdr = tok ? {{ headers: {{ Authorization: "Bearer " + tok }} }} : {{}};
function esc(s) {{ return String(s).replace(/[&<>"]/g, c => ({{"&":"&amp;","<":"&lt;",">":"&gt;","\"":"&quot;"}})[c]); }}
function gib(kb) {{ return (kb / 1048576).toFixed(1) + " GiB"; }}
async function refresh() {{
  try {{
    const s = await (await fetch("/api/status", hdr)).json();
    document.getElementById("uptime").textContent = s.uptime_s;
    const h = document.getElementById("health");
    h.textContent = s.health; h.className = s.health === "healthy" ? "" : "bad";
    document.getElementById("mem").textContent = (s.memused / 1048576).toFixed(0);
    document.getElementById("target-rows").innerHTML = s.targets.map(t => {{
      const used = t.kb_total - t.kb_free, pct = t.kb_total ? Math.floor(used * 100 / t.kb_total) : 0;
      return `<tr class="target" data-target="${{esc(t.name)}}"><td>${{esc(t.name)}}</td><td>${{esc(t.kind)}}</td><td>${{gib(t.kb_total)}}</td>` +
        `<td><div class="bar"><div style="width:${{pct}}%"></div></div> ${{pct}}%</td><td>${{t.exports}}</td><td>${{t.readonly ? "read-only" : "up"}}</td></tr>`;
    }}).join("");
    document.getElementById("shard-rows").innerHTML = s.shards.map(x =>
      `<tr><td>${{x.id}}</td><td>${{x.requests}}</td><td>${{x.active}}</td><td>${{(x.busy_us / 1e6).toFixed(1)}}</td><td>${{x.exports}}</td><td>${{x.locks}}</td></tr>`).join("");
    const hist = await (await fetch("/api/history", hdr)).json();
    const rates = [];
    for (let i = 1; i < hist.length; i++) {{
      const dt = Math.max(1, hist[i].t_ms - hist[i - 1].t_ms) / 1000;
      rates.push([(hist[i].write_bytes - hist[i - 1].write_bytes) / dt / 1048576,
                  (hist[i].read_bytes - hist[i - 1].read_bytes) / dt / 1048576]);
    }}
    const max = Math.max(1, ...rates.map(r => Math.max(r[0], r[1])));
    const pts = k => rates.map((r, i) => `${{(i * 600 / 299).toFixed(1)}},${{(145 - r[k] * 140 / max).toFixed(1)}}`).join(" ");
    document.getElementById("tput-w").setAttribute("points", pts(0));
    document.getElementById("tput-r").setAttribute("points", pts(1));
    const last = rates.length ? rates[rates.length - 1] : [0, 0];
    document.getElementById("wrate").textContent = last[0].toFixed(1);
    document.getElementById("rrate").textContent = last[1].toFixed(1);
  }} catch (e) {{ document.getElementById("health").textContent = "unreachable"; }}
}}
refresh();
setInterval(refresh, 2000);
</script>
</body></html>
"##,
        fs = esc(&s.fsname),
        ver = esc(&s.version),
        nids = esc(&s.nids.join(", ")),
        up = s.uptime_s,
        hc = if s.health == "healthy" { "" } else { "bad" },
        health = esc(&s.health),
        mem = s.memused >> 20,
        rows = target_rows(s),
        shards = shard_rows(s),
    )
}
