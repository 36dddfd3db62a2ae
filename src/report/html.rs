//! `report.html`: the run's record as one self-contained page (inline CSS and SVG charts;
//! no script, no font, image or link fetched from anywhere) that reads well on a laptop and
//! on a phone. [`render`] is a pure function of the report; every text that comes from a
//! script, a command or a target goes through [`escape`] after the secret mask.

use std::collections::BTreeMap;

use serde_json::Value;

use super::markup::escape;
use super::model::{phase_status_text, Report, RollbackStatus};
use super::svg::{self, Chart, Series, Stroke};
use crate::core::thresholds::{format_number, format_percent};
use crate::pipeline::{CheckStatus, PhaseStatus};

/// The page's style: system fonts only, tables that scroll sideways on narrow screens,
/// charts that take the width they are given.
const CSS: &str = r#"
:root{color-scheme:light dark;--bg:#fff;--fg:#1f2328;--muted:#59636e;--line:#d1d9e0;--card:#f6f8fa;
--pass:#1a7f37;--warn:#9a6700;--fail:#cf222e;--none:#59636e;
--c-p50:#0969da;--c-p95:#8250df;--c-p99:#bc4c00;--c-err:#cf222e;--c-5xx:#953800;--c-level:#cf222e;--c-score:#0969da}
@media (prefers-color-scheme:dark){:root{--bg:#0d1117;--fg:#e6edf3;--muted:#9198a1;--line:#3d444d;--card:#151b23;
--pass:#3fb950;--warn:#d29922;--fail:#f85149;--c-p50:#4493f8;--c-p95:#ab7df8;--c-p99:#db6d28;--c-err:#f85149;--c-5xx:#db6d28;--c-score:#4493f8}}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
main{max-width:1100px;margin:0 auto;padding:16px}
h1{font-size:1.5rem;margin:.2rem 0 .6rem;overflow-wrap:anywhere}
h2{font-size:1.15rem;margin:1.6rem 0 .6rem;border-bottom:1px solid var(--line);padding-bottom:.3rem}
h3{font-size:1rem;margin:1.2rem 0 .4rem;overflow-wrap:anywhere}
.muted{color:var(--muted)}
.verdict{display:flex;flex-wrap:wrap;gap:12px 24px;align-items:center;background:var(--card);border:1px solid var(--line);border-radius:8px;padding:12px 16px}
.badge{display:inline-block;font-weight:700;border-radius:6px;padding:2px 10px;color:#fff;background:var(--none)}
.badge.pass{background:var(--pass)}.badge.warning{background:var(--warn)}.badge.failed{background:var(--fail)}
.score{font-size:2rem;font-weight:700;line-height:1}
.score small{font-size:1rem;font-weight:400;color:var(--muted)}
dl.meta{display:grid;grid-template-columns:max-content 1fr;gap:2px 12px;margin:12px 0}
dl.meta dt{color:var(--muted)}dl.meta dd{margin:0;overflow-wrap:anywhere}
.scroll{overflow-x:auto;-webkit-overflow-scrolling:touch;max-width:100%}
table{border-collapse:collapse;width:100%;font-size:14px}
th,td{padding:6px 8px;border-bottom:1px solid var(--line);text-align:left;vertical-align:top;white-space:nowrap}
th{background:var(--card)}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
td.msg{white-space:normal;min-width:18em;overflow-wrap:anywhere}
.st{font-weight:600}.st.passed,.st.ok,.st.not_needed{color:var(--pass)}.st.warning{color:var(--warn)}
.st.elevated{color:var(--warn)}.st.critical,.st.failed,.st.would_fail,.st.missing,.st.never,.st.declined,.st.not_run{color:var(--fail)}.st.skipped,.st.would_run,.st.running{color:var(--muted)}
.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(min(100%,420px),1fr));gap:16px;margin-bottom:12px}
figure.chart{margin:0;background:var(--card);border:1px solid var(--line);border-radius:8px;padding:8px}
figure.chart svg{display:block;width:100%;height:auto}
figcaption{font-size:13px;padding:4px 4px 0}
.key{white-space:nowrap;margin-left:8px}
.swatch{display:inline-block;width:14px;height:3px;vertical-align:middle;margin-right:4px;background:currentColor}
.swatch.dashed{background:none;border-top:2px dashed currentColor;height:0}
svg .grid{stroke:var(--line);stroke-width:1}svg .axis{stroke:var(--muted);stroke-width:1}
svg text{fill:var(--muted);font-size:12px}
svg polyline{fill:none;stroke:currentColor}svg circle.dot{fill:currentColor;stroke:none}
svg polyline.line,svg polyline.step{stroke-width:2.5;stroke-linejoin:round}
svg polyline.threshold{stroke-width:1.5;stroke-dasharray:6 4}
.s-p50{color:var(--c-p50)}.s-p95{color:var(--c-p95)}.s-p99{color:var(--c-p99)}.s-err{color:var(--c-err)}
.s-5xx{color:var(--c-5xx)}.s-level{color:var(--c-level)}.s-score{color:var(--c-score)}
.s-warn{color:var(--warn)}.s-crit{color:var(--fail)}.s-pass{color:var(--pass)}
.box{border-left:4px solid var(--line);background:var(--card);padding:8px 12px;border-radius:4px;overflow-wrap:anywhere}
.box.bad{border-left-color:var(--fail)}.box.good{border-left-color:var(--pass)}
footer{margin:2rem 0 1rem;color:var(--muted);font-size:13px}
@media (max-width:600px){main{padding:10px}body{font-size:14px}.score{font-size:1.6rem}dl.meta{grid-template-columns:1fr}dl.meta dd{margin-bottom:4px}}
"#;

/// Writes escaped, masked text: every string of the report passes here on its way out.
struct Out<'a> {
    mask: &'a dyn Fn(&str) -> String,
}

impl Out<'_> {
    /// The text masked, then escaped.
    fn t(&self, s: &str) -> String {
        escape(&(self.mask)(s))
    }
}

/// Formats milliseconds as `350 ms`, `2.4 s` or `3 m 05 s`.
fn ms(v: u64) -> String {
    match v {
        0..=999 => format!("{v} ms"),
        1_000..=59_999 => format!("{} s", format_number((v as f64 / 100.0).round() / 10.0)),
        _ => format!("{} m {:02} s", v / 60_000, (v % 60_000) / 1000),
    }
}

fn verdict_class(r: &Report) -> &'static str {
    match r.verdict.map(|v| v.as_str()) {
        Some("PASS") => "pass",
        Some("WARNING") => "warning",
        Some(_) => "failed",
        None => "none",
    }
}

fn phase_class(p: &crate::pipeline::PhaseRecord, r: &Report) -> &'static str {
    match p.status {
        PhaseStatus::Passed if !r.dry_run && p.score * 20.0 < r.thresholds.pass => "warning",
        PhaseStatus::Passed => "passed",
        PhaseStatus::Failed => "failed",
        PhaseStatus::Skipped => "skipped",
        PhaseStatus::Running => "running",
    }
}

fn check_class(s: CheckStatus) -> &'static str {
    match s {
        CheckStatus::Passed => "passed",
        CheckStatus::Warning => "warning",
        CheckStatus::Failed => "failed",
        CheckStatus::WouldRun => "would_run",
        CheckStatus::WouldFail => "would_fail",
    }
}

/// Renders the report as a self-contained HTML page. `mask` hides secrets in every text
/// taken from the report (the report itself holds them unmasked until it is written).
pub(crate) fn render(r: &Report, mask: &dyn Fn(&str) -> String) -> String {
    let o = Out { mask };
    let mut h = String::with_capacity(32 * 1024);
    let title = format!("Deployment {}: {}", r.env, super::render::verdict_text(r));
    h.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">");
    h.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">");
    // Nothing may be fetched: no network, no inline script either.
    h.push_str("<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">");
    h.push_str(&format!("<title>{}</title>", o.t(&title)));
    h.push_str(&format!("<style>{CSS}</style></head><body><main>"));
    header(&mut h, &o, r, &title);
    phases(&mut h, &o, r);
    checks(&mut h, &o, r);
    screenshots(&mut h, &o, r, &|f| std::fs::read(f).ok());
    monitors(&mut h, &o, r);
    rollback(&mut h, &o, r);
    retries(&mut h, &o, r);
    trend(&mut h, &o, r);
    h.push_str(&format!(
        "<footer>Written by deployer · record {} · {}</footer>",
        o.t(r.schema),
        o.t(&r.run_id)
    ));
    h.push_str("</main></body></html>\n");
    h
}

fn header(h: &mut String, o: &Out, r: &Report, title: &str) {
    h.push_str(&format!("<h1>{}</h1>", o.t(title)));
    let score = r
        .score
        .map(|s| format!("{s:.0}<small>/100</small>"))
        .unwrap_or_else(|| "–".into());
    let verdict = r
        .verdict
        .map(|v| v.as_str().to_string())
        .unwrap_or_else(|| if r.dry_run { "DRY RUN" } else { "NO VERDICT" }.into());
    h.push_str(&format!(
        "<section class=\"verdict\"><span class=\"badge {}\" data-verdict=\"{}\">{}</span><span class=\"score\">{score}</span>",
        verdict_class(r),
        o.t(&verdict),
        o.t(&verdict)
    ));
    if let Some(why) = &r.verdict_reason {
        h.push_str(&format!("<span>{}</span>", o.t(why)));
    }
    if let Some(c) = &r.comparison {
        let text = match (c.score_delta, c.previous_score) {
            (Some(d), Some(p)) => format!("{d:+.0} against {} ({p:.0})", c.previous_run_id),
            _ => format!("previous run {}", c.previous_run_id),
        };
        h.push_str(&format!("<span class=\"muted\">{}</span>", o.t(&text)));
    }
    h.push_str("</section><dl class=\"meta\">");
    let mut row = |k: &str, v: String| {
        h.push_str(&format!("<dt>{}</dt><dd>{}</dd>", escape(k), o.t(&v)));
    };
    row("run", r.run_id.clone());
    row("script", format!("{} ({})", r.script, r.mode));
    row("environment", r.env.clone());
    row(
        "started",
        format!("{} · took {}", r.started_at, ms(r.duration_ms)),
    );
    row(
        "status",
        format!(
            "{}{} · exit {}",
            serde_json::to_value(r.status)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            if r.dry_run { " (dry run)" } else { "" },
            r.exit_code
        ),
    );
    if let Some(g) = &r.git {
        let short: String = g.commit.chars().take(12).collect();
        row(
            "git",
            match &g.branch {
                Some(b) => format!("{short} on {b}"),
                None => short,
            },
        );
    }
    row("by", format!("{}@{}", r.user, r.host));
    if !r.changed_hosts.is_empty() {
        row("changed hosts", r.changed_hosts.join(", "));
    }
    for (k, v) in &r.vars {
        row(&format!("--var {k}"), v.clone());
    }
    for (k, v) in &r.recorded {
        row(&format!("recorded {k}"), v.clone());
    }
    h.push_str("</dl>");
    if let Some(e) = &r.error {
        let at = e
            .location
            .as_ref()
            .map(|l| format!(" ({l})"))
            .unwrap_or_default();
        h.push_str(&format!(
            "<p class=\"box bad\"><strong>Error</strong>{}: {}</p>",
            o.t(&at),
            o.t(&e.message)
        ));
    }
}

fn phases(h: &mut String, o: &Out, r: &Report) {
    h.push_str("<h2>Phases</h2>");
    if r.phases.is_empty() {
        h.push_str("<p class=\"muted\">This script has no phases: nothing was scored.</p>");
        return;
    }
    h.push_str("<div class=\"scroll\"><table data-table=\"phases\"><thead><tr><th class=\"num\">#</th><th>Phase</th><th>Status</th><th class=\"num\">Score</th><th class=\"num\">Duration</th><th class=\"num\">Checks</th><th>Note</th></tr></thead><tbody>");
    for p in &r.phases {
        let status = if r.dry_run {
            crate::pipeline::dry_phase_label(p)
        } else {
            phase_status_text(p, &r.thresholds)
        };
        let note = p
            .error
            .clone()
            .or_else(|| p.reason.clone())
            .unwrap_or_default();
        h.push_str(&format!(
            "<tr><td class=\"num\">{}</td><td>{}</td><td class=\"st {}\">{}</td><td class=\"num\">{:.1}/5</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"msg\">{}</td></tr>",
            p.index,
            o.t(&p.name),
            phase_class(p, r),
            o.t(&status),
            p.score,
            ms(p.duration_ms),
            p.checks.len(),
            o.t(&note)
        ));
    }
    let total = r
        .score
        .map(|s| format!("{s:.0}/100"))
        .unwrap_or_else(|| "–".into());
    h.push_str(&format!(
        "</tbody><tfoot><tr><th></th><th>Total</th><th>{}</th><th class=\"num\">{}</th><th class=\"num\">{}</th><th></th><th></th></tr></tfoot></table></div>",
        o.t(&super::render::verdict_text(r)),
        o.t(&total),
        ms(r.duration_ms)
    ));
}

fn checks(h: &mut String, o: &Out, r: &Report) {
    let all: Vec<_> = r
        .phases
        .iter()
        .flat_map(|p| p.checks.iter().map(move |c| (p, c)))
        .collect();
    if all.is_empty() {
        return;
    }
    h.push_str("<h2>Checks</h2><div class=\"scroll\"><table data-table=\"checks\"><thead><tr><th>Phase</th><th>Check</th><th>Status</th><th class=\"num\">Duration</th><th class=\"num\">Attempts</th><th class=\"num\">Score</th><th>Message</th></tr></thead><tbody>");
    for (p, c) in all {
        let msg = c
            .error
            .clone()
            .or_else(|| c.warning.clone())
            .unwrap_or_default();
        h.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td class=\"st {}\">{} {}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"msg\">{}</td></tr>",
            o.t(&p.name),
            o.t(&c.name),
            check_class(c.status),
            c.status.mark(),
            check_class(c.status).replace('_', " "),
            ms(c.duration_ms),
            c.attempts,
            c.score.map(|s| format!("{s:.1}/5")).unwrap_or_default(),
            o.t(&msg)
        ));
    }
    h.push_str("</tbody></table></div>");
}

/// One monitor tick as the charts need it, read from `metrics.monitor.ticks[]`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Tick {
    /// Seconds since the monitor started.
    pub t: f64,
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
    pub error_rate: f64,
    pub rate_5xx: f64,
    pub level: u8,
    pub warning: BTreeMap<String, f64>,
    pub critical: BTreeMap<String, f64>,
}

/// Reads the ticks of a monitor's summary (report.json `metrics.monitor`).
pub(crate) fn ticks(monitor: &Value) -> Vec<Tick> {
    let limits = |v: &Value| -> BTreeMap<String, f64> {
        v.as_object()
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| v.as_f64().map(|f| (k.clone(), f)))
                    .collect()
            })
            .unwrap_or_default()
    };
    monitor["ticks"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|t| Tick {
                    t: t["t_ms"].as_f64().unwrap_or(0.0) / 1000.0,
                    p50: t["p50_ms"].as_f64(),
                    p95: t["p95_ms"].as_f64(),
                    p99: t["p99_ms"].as_f64(),
                    error_rate: t["error_rate"].as_f64().unwrap_or(0.0),
                    rate_5xx: t["rate_5xx"].as_f64().unwrap_or(0.0),
                    level: t["level"].as_u64().unwrap_or(0).min(3) as u8,
                    warning: limits(&t["warning"]),
                    critical: limits(&t["critical"]),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The threshold lines of `metrics` in the ticks: one dashed series per limit named on
/// any tick, warning then critical, following the limit from tick to tick.
fn threshold_series(ts: &[Tick], metrics: &[&str]) -> Vec<Series> {
    let mut out = Vec::new();
    for (kind, class) in [("warning", "s-warn"), ("critical", "s-crit")] {
        for m in metrics {
            let pick = |t: &Tick| {
                if kind == "warning" {
                    t.warning.get(*m).copied()
                } else {
                    t.critical.get(*m).copied()
                }
            };
            if ts.iter().any(|t| pick(t).is_some()) {
                out.push(Series {
                    label: format!("{kind} {m}"),
                    class,
                    stroke: Stroke::Dashed,
                    points: ts.iter().map(|t| (t.t, pick(t))).collect(),
                });
            }
        }
    }
    out
}

fn seconds(v: f64) -> String {
    format!("{}s", format_number((v * 10.0).round() / 10.0))
}

/// The latency chart of a monitor: P50, P95 and P99 per tick, with their limits.
pub(crate) fn latency_chart(title: &str, ts: &[Tick]) -> Chart {
    let line = |label: &str, class, f: fn(&Tick) -> Option<f64>| Series {
        label: label.into(),
        class,
        stroke: Stroke::Line,
        points: ts.iter().map(|t| (t.t, f(t))).collect(),
    };
    let mut series = vec![
        line("P50", "s-p50", |t| t.p50),
        line("P95", "s-p95", |t| t.p95),
        line("P99", "s-p99", |t| t.p99),
    ];
    series.extend(threshold_series(ts, &["p50_ms", "p95_ms", "p99_ms"]));
    Chart {
        title: format!("Latency per tick: {title}"),
        id: "latency",
        series,
        y_label: |v| format!("{} ms", format_number(v)),
        x_label: seconds,
        y_max: None,
        y_ticks: Vec::new(),
    }
}

/// The error chart of a monitor: the error rate and the 5xx rate per tick, with limits.
pub(crate) fn error_chart(title: &str, ts: &[Tick]) -> Chart {
    // The 5xx rate first: never above the error rate, it would hide it where they are equal.
    let mut series = vec![
        Series {
            label: "5xx rate".into(),
            class: "s-5xx",
            stroke: Stroke::Line,
            points: ts.iter().map(|t| (t.t, Some(t.rate_5xx))).collect(),
        },
        Series {
            label: "error rate".into(),
            class: "s-err",
            stroke: Stroke::Line,
            points: ts.iter().map(|t| (t.t, Some(t.error_rate))).collect(),
        },
    ];
    series.extend(threshold_series(ts, &["error_rate", "rate_5xx"]));
    Chart {
        title: format!("Errors per tick: {title}"),
        id: "errors",
        series,
        y_label: format_percent,
        x_label: seconds,
        y_max: None,
        y_ticks: Vec::new(),
    }
}

/// The alert level after each tick, as a staircase from ok to critical.
pub(crate) fn level_chart(title: &str, ts: &[Tick]) -> Chart {
    Chart {
        title: format!("Alert level: {title}"),
        id: "levels",
        series: vec![Series {
            label: "level".into(),
            class: "s-level",
            stroke: Stroke::Step,
            points: ts.iter().map(|t| (t.t, Some(f64::from(t.level)))).collect(),
        }],
        y_label: |v| format_number(v),
        x_label: seconds,
        y_max: Some(3.0),
        y_ticks: ["ok", "warning", "elevated", "critical"]
            .iter()
            .enumerate()
            .map(|(i, n)| (i as f64, n.to_string()))
            .collect(),
    }
}

/// The scores of the last comparable runs, this one last, with the pass and warn lines.
pub(crate) fn trend_chart(r: &Report) -> Chart {
    let n = r.trend.len() as f64;
    let x = |i: usize| i as f64 + 1.0 - n;
    let flat = |v: f64| (0..r.trend.len()).map(|i| (x(i), Some(v))).collect();
    Chart {
        title: format!("Score of the last {} comparable runs", r.trend.len()),
        id: "trend",
        series: vec![
            Series {
                label: "score".into(),
                class: "s-score",
                stroke: Stroke::Line,
                points: r
                    .trend
                    .iter()
                    .enumerate()
                    .map(|(i, s)| (x(i), Some(*s)))
                    .collect(),
            },
            Series {
                label: format!("pass {}", format_number(r.thresholds.pass)),
                class: "s-pass",
                stroke: Stroke::Dashed,
                points: flat(r.thresholds.pass),
            },
            Series {
                label: format!("warning {}", format_number(r.thresholds.warn)),
                class: "s-warn",
                stroke: Stroke::Dashed,
                points: flat(r.thresholds.warn),
            },
        ],
        y_label: |v| format_number(v),
        x_label: |v| {
            if v == 0.0 {
                "this run".into()
            } else {
                format_number(v)
            }
        },
        y_max: Some(100.0),
        y_ticks: Vec::new(),
    }
}

fn monitors(h: &mut String, o: &Out, r: &Report) {
    let found: Vec<_> = r
        .phases
        .iter()
        .filter_map(|p| {
            let m = p.metrics.as_ref()?.get("monitor")?;
            Some((p, m))
        })
        .collect();
    if found.is_empty() {
        return;
    }
    h.push_str("<h2>Monitoring</h2>");
    for (p, m) in found {
        let target = (o.mask)(m["target"].as_str().unwrap_or("?"));
        let ts = ticks(m);
        h.push_str(&format!("<h3>{} · {}</h3>", o.t(&p.name), escape(&target)));
        let f = |k: &str| m[k].as_f64().map(format_number).unwrap_or_default();
        h.push_str(&format!(
            "<p>{} ticks · highest level <span class=\"st {}\">{}</span> · availability {} % · performance {} % · stability {} % · score {}/100 · {} · stopped: {}</p>",
            ts.len(),
            o.t(m["max_level_name"].as_str().unwrap_or("")),
            o.t(m["max_level_name"].as_str().unwrap_or("")),
            f("availability"),
            f("performance"),
            f("stability"),
            f("score"),
            ms(m["duration_ms"].as_u64().unwrap_or(0)),
            o.t(m["stopped"].as_str().unwrap_or(""))
        ));
        if ts.is_empty() {
            h.push_str("<p class=\"muted\">No tick was measured.</p>");
            continue;
        }
        h.push_str("<div class=\"charts\">");
        h.push_str(&svg::render(&latency_chart(&target, &ts)));
        h.push_str(&svg::render(&error_chart(&target, &ts)));
        h.push_str(&svg::render(&level_chart(&target, &ts)));
        h.push_str("</div>");
        if ts.iter().any(|t| t.p95.is_none()) {
            h.push_str("<p class=\"muted\">Gaps in the latency lines: ticks with no successful response (latency unknown).</p>");
        }
        if let Some(alerts) = m["alerts"].as_array().filter(|a| !a.is_empty()) {
            h.push_str("<div class=\"scroll\"><table data-table=\"alerts\"><thead><tr><th class=\"num\">At</th><th>Level</th><th>Why</th></tr></thead><tbody>");
            let name = |v: &Value| {
                ["ok", "warning", "elevated", "critical"]
                    .get(v.as_u64().unwrap_or(0) as usize)
                    .copied()
                    .unwrap_or("critical")
            };
            for a in alerts {
                h.push_str(&format!(
                    "<tr><td class=\"num\">{}</td><td>{} → <span class=\"st {}\">{}</span></td><td class=\"msg\">{}</td></tr>",
                    ms(a["t_ms"].as_u64().unwrap_or(0)),
                    name(&a["from"]),
                    name(&a["level"]),
                    name(&a["level"]),
                    o.t(a["reason"].as_str().unwrap_or(""))
                ));
            }
            h.push_str("</tbody></table></div>");
        }
    }
}

fn rollback(h: &mut String, o: &Out, r: &Report) {
    let rb = &r.rollback;
    h.push_str("<h2>Rollback</h2>");
    let class = match rb.status {
        RollbackStatus::NotNeeded | RollbackStatus::Ok => "good",
        _ => "bad",
    };
    h.push_str(&format!(
        "<div class=\"box {class}\" data-rollback=\"{}\"><p><span class=\"st {}\">{}</span>",
        rb.status.as_str(),
        rb.status.as_str(),
        rb.status.as_str().replace('_', " ")
    ));
    if let Some(line) = super::render::rollback_line(r, true) {
        h.push_str(&format!(": {}", o.t(&line)));
    }
    h.push_str("</p>");
    if rb.status != RollbackStatus::NotNeeded {
        let mut parts = Vec::new();
        if let Some(p) = &rb.phase {
            parts.push(format!("phase {p}"));
        }
        // The error is in the line above (once).
        parts.push(format!("took {}", ms(rb.duration_ms)));
        h.push_str(&format!(
            "<p class=\"muted\">{}</p>",
            o.t(&parts.join(" · "))
        ));
    }
    if rb.status.needs_a_person() {
        h.push_str("<p><strong>A person must check what is live.</strong></p>");
    }
    h.push_str("</div>");
}

/// Screenshots above this size are linked (by their path in the run folder), not embedded.
const MAX_EMBEDDED_SHOT: usize = 4 * 1024 * 1024;

/// The screenshots of `browser::` visits, each embedded as a `data:` image so the page
/// stays one file; `read` loads a screenshot's bytes (none: missing, named only).
fn screenshots(
    h: &mut String,
    o: &Out,
    r: &Report,
    read: &dyn Fn(&std::path::Path) -> Option<Vec<u8>>,
) {
    use base64::Engine;
    if r.screenshots.is_empty() {
        return;
    }
    h.push_str("<h2>Screenshots</h2>");
    for shot in &r.screenshots {
        let state = match shot.ok {
            Some(true) => " · passed",
            Some(false) => " · FAILED",
            None => "",
        };
        let caption = format!("{} · {} · {}{state}", shot.path, shot.url, shot.viewport);
        h.push_str("<figure data-screenshot>");
        match read(&shot.file).filter(|b| b.len() <= MAX_EMBEDDED_SHOT) {
            Some(bytes) => h.push_str(&format!(
                "<img style=\"max-width:100%;height:auto;border:1px solid #8884\" alt=\"{}\" src=\"data:image/png;base64,{}\">",
                o.t(&shot.url),
                base64::engine::general_purpose::STANDARD.encode(bytes)
            )),
            None => h.push_str(&format!(
                "<p class=\"muted\">not embedded (missing or larger than {} MiB): {}</p>",
                MAX_EMBEDDED_SHOT / (1024 * 1024),
                o.t(&shot.path)
            )),
        }
        h.push_str(&format!(
            "<figcaption>{}</figcaption></figure>",
            o.t(&caption)
        ));
    }
}

fn retries(h: &mut String, o: &Out, r: &Report) {
    if r.retries.is_empty() {
        return;
    }
    h.push_str("<h2>Retries</h2><div class=\"scroll\"><table data-table=\"retries\"><thead><tr><th class=\"num\">Attempt</th><th class=\"num\">Wait</th><th>Error</th></tr></thead><tbody>");
    for e in &r.retries {
        h.push_str(&format!(
            "<tr><td class=\"num\">{}/{}</td><td class=\"num\">{}</td><td class=\"msg\">{}</td></tr>",
            e.attempt,
            e.attempts,
            ms(e.wait_ms),
            o.t(&e.error)
        ));
    }
    h.push_str("</tbody></table></div>");
}

fn trend(h: &mut String, _o: &Out, r: &Report) {
    h.push_str("<h2>Trend</h2>");
    if r.trend.is_empty() {
        h.push_str("<p class=\"muted\">No scored run of this environment and script yet.</p>");
        return;
    }
    h.push_str("<div class=\"charts\">");
    h.push_str(&svg::render(&trend_chart(r)));
    h.push_str("</div>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn screenshots_are_embedded_as_data_images_with_escaped_captions() {
        let mut r = report();
        r.screenshots = vec![
            crate::sys::browser::Shot {
                file: "/x/01-a.png".into(),
                path: "screenshots/01-a.png".into(),
                url: "http://127.0.0.1/<b>?token=SECRET".into(),
                viewport: "390x844".into(),
                ok: Some(false),
            },
            crate::sys::browser::Shot {
                file: "/x/02-b.png".into(),
                path: "screenshots/02-b.png".into(),
                url: "http://127.0.0.1/b".into(),
                viewport: "1280x800".into(),
                ok: None,
            },
        ];
        let mask = |s: &str| s.replace("SECRET", "***");
        let o = Out { mask: &mask };
        let mut h = String::new();
        let read = |f: &std::path::Path| (f.ends_with("01-a.png")).then(|| b"PNG".to_vec());
        screenshots(&mut h, &o, &r, &read);
        assert!(h.contains("src=\"data:image/png;base64,UE5H\""), "{h}");
        assert!(h.contains("&lt;b&gt;?token=***"), "{h}");
        assert!(!h.contains("SECRET") && !h.contains("<b>"), "{h}");
        assert!(h.contains("· FAILED"), "{h}");
        assert!(h.contains("not embedded (missing or larger than 4 MiB): screenshots/02-b.png"));
    }
    use crate::core::score::Verdict;
    use crate::pipeline::{CheckRecord, PhaseRecord};
    use crate::report::model::{RollbackRecord, RunStatus};

    fn report() -> Report {
        let mut r = crate::report::model::sample(Vec::new());
        r.run_id = "20260101T000000Z-prod-abcd".into();
        r.env = "prod".into();
        r.started_at = "2026-01-01T00:00:00.000Z".into();
        r.finished_at = "2026-01-01T00:00:01.000Z".into();
        r.duration_ms = 1000;
        r.status = RunStatus::Completed;
        r.score = Some(100.0);
        r.verdict = Some(Verdict::Pass);
        r.exit_code = 0;
        r.trend = vec![100.0];
        r
    }

    fn phase(name: &str, checks: Vec<CheckRecord>, metrics: Option<Value>) -> PhaseRecord {
        PhaseRecord {
            index: 1,
            name: name.into(),
            required: false,
            skippable: false,
            status: PhaseStatus::Passed,
            score: 5.0,
            checks,
            duration_ms: 12,
            started_at: None,
            error: None,
            reason: None,
            metrics,
            hosts: Vec::new(),
        }
    }

    fn check(name: &str, error: Option<&str>) -> CheckRecord {
        CheckRecord {
            name: name.into(),
            status: if error.is_some() {
                CheckStatus::Failed
            } else {
                CheckStatus::Passed
            },
            duration_ms: 1500,
            attempts: 3,
            error: error.map(str::to_string),
            warning: None,
            score: None,
            location: None,
        }
    }

    fn plain(s: &str) -> String {
        s.to_string()
    }

    #[test]
    fn escaping_turns_markup_into_text() {
        assert_eq!(
            escape(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        assert_eq!(escape("plain ✓"), "plain ✓");
    }

    #[test]
    fn everything_from_scripts_is_escaped() {
        let xss = "<script>alert(1)</script>";
        let mut r = report();
        r.env = xss.into();
        r.script = format!("{xss}.rhai");
        r.vars.insert("k".into(), xss.into());
        r.phases = vec![phase(
            xss,
            vec![check(xss, Some(xss))],
            Some(serde_json::json!({ "monitor": {
                "target": xss, "max_level_name": xss, "stopped": xss,
                "ticks": [{ "t_ms": 0, "p50_ms": 1.0, "p95_ms": 2.0, "p99_ms": 3.0,
                            "error_rate": 0.0, "rate_5xx": 0.0, "level": 1 }],
                "alerts": [{ "t_ms": 0, "from": 0, "level": 1, "reason": xss }]
            }})),
        )];
        r.changed_hosts = vec![xss.into()];
        r.rollback.reason = Some(xss.into());
        r.rollback.status = RollbackStatus::Ok;
        r.error = Some(crate::report::model::ErrorRecord {
            message: xss.into(),
            location: Some(xss.into()),
        });
        let html = render(&r, &plain);
        assert!(!html.contains("<script"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        // The check's name is in its table as text.
        assert!(html.contains("<td>&lt;script&gt;alert(1)&lt;/script&gt;</td>"));
    }

    #[test]
    fn secrets_are_masked_everywhere() {
        let secret = "hunter2-s3cr3t";
        let mask = |s: &str| s.replace(secret, "***");
        let mut r = report();
        r.vars.insert("token".into(), secret.into());
        r.phases = vec![phase(
            "Deploy",
            vec![check(&format!("login {secret}"), Some(secret))],
            Some(serde_json::json!({ "monitor": {
                "target": format!("http://127.0.0.1/?t={secret}"),
                "ticks": [{ "t_ms": 0, "error_rate": 1.0, "rate_5xx": 0.0, "level": 1 }],
                "alerts": [{ "t_ms": 0, "from": 0, "level": 1, "reason": secret }]
            }})),
        )];
        r.error = Some(crate::report::model::ErrorRecord {
            message: format!("bad {secret}"),
            location: None,
        });
        let html = render(&r, &mask);
        assert!(!html.contains(secret), "{html}");
        assert!(html.contains("login ***"));
        assert!(html.contains("?t=***"));
    }

    #[test]
    fn the_page_is_self_contained() {
        let mut r = report();
        r.trend = vec![80.0, 90.0, 100.0];
        let html = render(&r, &plain);
        assert!(html.starts_with("<!DOCTYPE html>"));
        for bad in ["<script", "src=", "href=", "@import", "url(", "<link"] {
            assert!(!html.contains(bad), "{bad} in the page");
        }
        assert!(html.contains("name=\"viewport\""));
        assert!(html.contains("data-chart=\"trend\""));
    }

    fn known_ticks() -> Value {
        serde_json::json!({ "monitor": {
            "target": "http://127.0.0.1:1/health",
            "max_level_name": "warning",
            "stopped": "completed",
            "ticks": [
                { "t_ms": 0, "p50_ms": 10.0, "p95_ms": 20.0, "p99_ms": 40.0, "error_rate": 0.0,
                  "rate_5xx": 0.0, "level": 0, "warning": { "p95_ms": 100.0, "error_rate": 0.5 },
                  "critical": { "error_rate": 0.5 } },
                { "t_ms": 1000, "p50_ms": 20.0, "p95_ms": 60.0, "p99_ms": 80.0, "error_rate": 1.0,
                  "rate_5xx": 1.0, "level": 1, "warning": { "p95_ms": 100.0, "error_rate": 0.5 },
                  "critical": { "error_rate": 0.5 } },
                { "t_ms": 2000, "p50_ms": 10.0, "p95_ms": 20.0, "p99_ms": 200.0, "error_rate": 0.0,
                  "rate_5xx": 0.0, "level": 0, "warning": { "p95_ms": 100.0, "error_rate": 0.5 },
                  "critical": { "error_rate": 0.5 } }
            ]
        }})
    }

    /// The points plotted for known ticks, at the chart's known geometry.
    #[test]
    fn known_ticks_plot_at_known_points() {
        let m = known_ticks();
        let ts = ticks(&m["monitor"]);
        assert_eq!(ts.len(), 3);
        assert_eq!(ts[1].t, 1.0);
        assert_eq!(ts[1].warning.get("p95_ms"), Some(&100.0));
        let top = svg::PLOT_TOP;
        let bottom = svg::PLOT_BOTTOM;
        let (l, rgt) = (svg::PLOT_LEFT, svg::PLOT_RIGHT);
        let mid = (l + rgt) / 2.0;
        // Errors: 0 %, 100 %, 0 % on a 0-100 % axis; the limit 50 % halfway up.
        let errors = svg::render(&error_chart("t", &ts));
        let y_half = (top + bottom) / 2.0;
        assert!(errors.contains(&format!(
            "data-series=\"error rate\" fill=\"none\" points=\"{l},{bottom} {mid},{top} {rgt},{bottom}\""
        )), "{errors}");
        assert!(errors.contains(&format!(
            "data-series=\"warning error_rate\" fill=\"none\" points=\"{l},{y_half} {mid},{y_half} {rgt},{y_half}\""
        )), "{errors}");
        // Latency: the axis tops out at 200 ms (P99's largest value): P99 200 ms is at the top.
        let latency = latency_chart("t", &ts);
        assert_eq!(latency.y_top(), 200.0);
        let svg = svg::render(&latency);
        let y = |v: f64| {
            let s = format!("{:.1}", bottom - v / 200.0 * (bottom - top));
            s.strip_suffix(".0").map(str::to_string).unwrap_or(s)
        };
        assert!(
            svg.contains(&format!(
                "data-series=\"P99\" fill=\"none\" points=\"{l},{} {mid},{} {rgt},{top}\"",
                y(40.0),
                y(80.0)
            )),
            "{svg}"
        );
        assert!(svg.contains("data-series=\"warning p95_ms\""));
        assert!(!svg.contains("critical p95_ms"), "no limit, no line");
        // Levels: a step up at 1 s and down at 2 s.
        let levels = svg::render(&level_chart("t", &ts));
        let y1 = bottom - (bottom - top) / 3.0;
        let y1 = format!("{y1:.1}");
        let y1 = y1.strip_suffix(".0").unwrap_or(&y1);
        assert!(
            levels.contains(&format!(
                "points=\"{l},{bottom} {mid},{bottom} {mid},{y1} {rgt},{y1} {rgt},{bottom}\""
            )),
            "{levels}"
        );
    }

    #[test]
    fn a_report_shows_phases_checks_monitor_rollback_and_trend() {
        let mut r = report();
        r.phases = vec![phase(
            "Verify",
            vec![check("health answers", None)],
            Some(known_ticks()),
        )];
        r.rollback = RollbackRecord {
            status: RollbackStatus::Ok,
            reason: Some("monitoring reached critical".into()),
            phase: Some("Verify".into()),
            error: None,
            duration_ms: 2500,
            hosts: Vec::new(),
        };
        r.trend = vec![70.0, 85.0, 100.0];
        let html = render(&r, &plain);
        assert!(html.contains("data-table=\"phases\""));
        assert!(html.contains("<td>health answers</td>"));
        assert!(html.contains("<td class=\"num\">1.5 s</td><td class=\"num\">3</td>"));
        for chart in ["latency", "errors", "levels", "trend"] {
            assert!(html.contains(&format!("data-chart=\"{chart}\"")), "{chart}");
        }
        assert!(html.contains("data-rollback=\"ok\""));
        assert!(html.contains("monitoring reached critical"));
        assert!(html.contains("took 2.5 s"));
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(ms(350), "350 ms");
        assert_eq!(ms(2_440), "2.4 s");
        assert_eq!(ms(185_000), "3 m 05 s");
    }
}
