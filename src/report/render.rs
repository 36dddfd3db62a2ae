//! The score table: on the terminal at the end of a run and as `summary.md`.

use super::model::{phase_status_text, Report, RollbackStatus};

/// The rollback's line. `with_error`: the rollback's error follows (summary.md); the
/// terminal printed that error where the rollback failed, so its table does not repeat it.
pub(crate) fn rollback_line(r: &Report, with_error: bool) -> Option<String> {
    let rb = &r.rollback;
    let mut why = rb
        .reason
        .as_ref()
        .map(|x| format!(" ({x})"))
        .unwrap_or_default();
    if !rb.hosts.is_empty() {
        why.push_str(&format!(" on {}", rb.hosts.join(", ")));
    }
    Some(match rb.status {
        RollbackStatus::NotNeeded => return None,
        RollbackStatus::Ok => format!("rollback ran and succeeded{why}"),
        RollbackStatus::Failed if with_error => format!(
            "ROLLBACK FAILED{why}: {}",
            rb.error.clone().unwrap_or_default()
        ),
        RollbackStatus::Failed => format!("ROLLBACK FAILED{why}: see its error above"),
        RollbackStatus::Declined => format!("rollback declined{why}"),
        RollbackStatus::Never => {
            format!("rollback not run: rollback = \"never\" for this environment{why}")
        }
        RollbackStatus::Missing => {
            format!("rollback needed but the script defines no fn rollback(ctx){why}")
        }
        RollbackStatus::NotRun => {
            format!("rollback not run{why}: check what is live and roll back by hand if needed")
        }
    })
}

fn comparison_line(r: &Report) -> Option<String> {
    let c = r.comparison.as_ref()?;
    let prev = match (c.previous_score, &c.previous_verdict) {
        (Some(s), Some(v)) => format!("{s:.0} {v}"),
        (None, Some(v)) => v.clone(),
        _ => "no score".into(),
    };
    Some(match c.score_delta {
        Some(d) => format!("compared with {}: {d:+.0} (was {prev})", c.previous_run_id),
        None => format!("previous run {}: {prev}", c.previous_run_id),
    })
}

fn trend_line(r: &Report) -> Option<String> {
    (r.trend.len() > 1).then(|| {
        let scores: Vec<String> = r.trend.iter().map(|s| format!("{s:.0}")).collect();
        format!("trend (last {}): {}", r.trend.len(), scores.join(" → "))
    })
}

/// The verdict as shown: `PASS`, `WARNING`, `FAILED`, with the reason when something other
/// than the score decided it (`FAILED: rolled back`); a dry run has none.
pub fn verdict_text(r: &Report) -> String {
    match (&r.verdict, &r.verdict_reason) {
        (None, _) if r.dry_run => "no verdict: dry run (nothing was changed)".into(),
        (None, _) => "no verdict".into(),
        (Some(v), Some(why)) => format!("{v}: {why}"),
        (Some(v), None) => v.to_string(),
    }
}

/// Renders the final table for the terminal (plain text, one line per row).
pub fn table(r: &Report) -> Vec<String> {
    let mut lines = Vec::new();
    let width = r
        .phases
        .iter()
        .map(|p| p.name.chars().count())
        .max()
        .unwrap_or(5)
        .max(5);
    lines.push(if r.dry_run {
        format!("Dry run plan: {} ({})", r.env, r.run_id)
    } else {
        format!("Deployment score: {} ({})", r.env, r.run_id)
    });
    for p in &r.phases {
        if r.dry_run {
            lines.push(format!(
                "  {:>2}  {:<width$}  {}",
                p.index,
                p.name,
                crate::pipeline::dry_phase_label(p)
            ));
            continue;
        }
        lines.push(format!(
            "  {:>2}  {:<width$}  {:>3.1}/5  {}",
            p.index,
            p.name,
            p.score,
            phase_status_text(p, &r.thresholds)
        ));
    }
    let total = r
        .score
        .map(|s| format!("{s:.0}/100"))
        .unwrap_or_else(|| "-".into());
    lines.push(format!(
        "      {:<width$}  {total}  {}",
        "Total",
        verdict_text(r)
    ));
    lines.extend(rollback_line(r, false).map(|l| format!("  {l}")));
    lines.extend(comparison_line(r).map(|l| format!("  {l}")));
    lines.extend(trend_line(r).map(|l| format!("  {l}")));
    lines
}

/// Renders `summary.md`.
pub fn markdown(r: &Report) -> String {
    let mut md = String::new();
    md.push_str(&format!("# Deployment {}: {}\n\n", r.env, verdict_text(r)));
    md.push_str(&format!(
        "- run: `{}`{}\n- script: `{}` (sha256 `{}`)\n- started: {} — took {} ms\n- status: {:?}\n",
        r.run_id,
        if r.dry_run { " (dry run)" } else { "" },
        r.script,
        &r.script_sha256[..r.script_sha256.len().min(12)],
        r.started_at,
        r.duration_ms,
        r.status
    ));
    if let Some(g) = &r.git {
        md.push_str(&format!(
            "- git: `{}`{}\n",
            &g.commit[..g.commit.len().min(12)],
            g.branch
                .as_ref()
                .map(|b| format!(" on {b}"))
                .unwrap_or_default(),
        ));
    }
    md.push_str("\n| # | Phase | Score | Status |\n|---|---|---|---|\n");
    for p in &r.phases {
        let (score, status) = if r.dry_run {
            ("-".to_string(), crate::pipeline::dry_phase_label(p))
        } else {
            (
                format!("{:.1}/5", p.score),
                phase_status_text(p, &r.thresholds),
            )
        };
        md.push_str(&format!(
            "| {} | {} | {score} | {status} |\n",
            p.index, p.name
        ));
    }
    let total = r
        .score
        .map(|s| format!("{s:.0}/100"))
        .unwrap_or_else(|| "-".into());
    md.push_str(&format!(
        "| | **Total** | **{total}** | **{}** |\n\n",
        verdict_text(r)
    ));
    for p in &r.phases {
        if p.checks.is_empty() && p.hosts.is_empty() {
            continue;
        }
        md.push_str(&format!("## {}\n\n", p.name));
        for h in &p.hosts {
            md.push_str(&format!(
                "- {} host {} (batch {}, {} ms{}{}{}){}\n",
                match h.status {
                    "passed" => "✓",
                    "stopped" => "■",
                    _ => "✗",
                },
                h.host,
                h.batch,
                h.duration_ms,
                if h.changed { ", changed" } else { "" },
                if h.status == "stopped" {
                    ", stopped"
                } else {
                    ""
                },
                match h.rollback {
                    Some("ok") => ", rolled back alone".to_string(),
                    Some(other) => format!(", rollback {other}"),
                    None => String::new(),
                },
                h.error
                    .as_ref()
                    .map(|e| format!(": {}", e.lines().next().unwrap_or_default()))
                    .unwrap_or_default()
            ));
        }
        for c in &p.checks {
            let mark = c.status.mark();
            md.push_str(&format!(
                "- {mark} {} ({} ms{})\n",
                c.name,
                c.duration_ms,
                if c.attempts > 1 {
                    format!(", {} attempts", c.attempts)
                } else {
                    String::new()
                }
            ));
            if let Some(e) = c.error.as_ref().or(c.warning.as_ref()) {
                md.push_str(&format!("  - {}\n", e.lines().next().unwrap_or_default()));
            }
        }
        md.push('\n');
    }
    for l in [rollback_line(r, true), comparison_line(r), trend_line(r)]
        .into_iter()
        .flatten()
    {
        md.push_str(&format!("- {l}\n"));
    }
    if !r.screenshots.is_empty() {
        md.push_str("\n## Screenshots\n\n");
        for s in &r.screenshots {
            let mark = match s.ok {
                Some(true) => "✓ ",
                Some(false) => "✗ ",
                None => "",
            };
            md.push_str(&format!(
                "- {mark}[{}]({}) — {} ({})\n",
                s.path, s.path, s.url, s.viewport
            ));
        }
    }
    if let Some(e) = &r.error {
        md.push_str(&format!(
            "\n## Error\n\n```\n{}{}\n```\n",
            e.message,
            e.location
                .as_ref()
                .map(|l| format!("\n--> {l}"))
                .unwrap_or_default()
        ));
    }
    md
}
