//! `sample`, `monitor`, `collect` and `prometheus::query/query_range/value`: measuring a
//! release after it goes out. Thin bindings over `core::{stats, thresholds, alert}` and
//! `metrics::sampler`.

use std::time::{Duration, Instant};

use rhai::plugin::*;
use rhai::{Array, FnPtr, Map};
use serde_json::json;

use super::error::{
    at_call, control, control_of, is_terminated, message_of, state, terminated, throw, throw_with,
    Error,
};
use super::opts::{duration, number, Opts};
use crate::core::duration::format_duration;
use crate::core::monitor::{self, Monitor, MonitorConfig, MonitorPlan, MonitorTick, Stopped};
use crate::core::stats::SampleStats;
use crate::core::thresholds::Thresholds;
use crate::host::progress;
use crate::host::state::HostState;
use crate::metrics::lines::{self, Line};
use crate::metrics::sampler::{self, Mode, SampleReport, SampleSpec};
use crate::pipeline::{Control, Event};

pub(crate) const SAMPLE_OPTS: &[&str] = &[
    "requests",
    "duration",
    "concurrency",
    "rate",
    "method",
    "headers",
    "timeout",
];
pub(crate) const MONITOR_OPTS: &[&str] = &[
    "duration",
    "interval",
    "requests",
    "concurrency",
    "timeout",
    "method",
    "headers",
    "thresholds",
    "critical",
    "sustained",
    "rollback_on_critical",
];
pub(crate) const COLLECT_OPTS: &[&str] = &[
    "offsets",
    "requests",
    "concurrency",
    "timeout",
    "method",
    "headers",
];

/// Builds a sample spec from options; `requests` is used when neither count nor duration is set.
fn spec(func: &str, url: &str, o: &Opts, default_requests: i64) -> Result<SampleSpec, Error> {
    let mode = match (o.int("requests")?, o.duration("duration")?) {
        (Some(_), Some(_)) => {
            return Err(throw(
                "usage",
                format!("{func}(): give `requests` or `duration`, not both"),
            ))
        }
        (Some(n), None) if n < 1 => {
            return Err(throw(
                "usage",
                format!("{func}(): requests must be at least 1, got {n}"),
            ))
        }
        (Some(n), None) => Mode::Requests(n as u64),
        (None, Some(d)) if d.is_zero() => {
            return Err(throw(
                "usage",
                format!("{func}(): duration must be more than 0s"),
            ))
        }
        (None, Some(d)) => Mode::Duration(d),
        (None, None) => Mode::Requests(default_requests as u64),
    };
    let mut spec = SampleSpec::new(url, mode);
    if let Some(c) = o.int("concurrency")? {
        if c < 1 {
            return Err(throw(
                "usage",
                format!("{func}(): concurrency must be at least 1, got {c}"),
            ));
        }
        spec.concurrency = c as usize;
    }
    if let Some(r) = o.float("rate")? {
        if r <= 0.0 {
            return Err(throw(
                "usage",
                format!("{func}(): rate must be more than 0 requests/s, got {r}"),
            ));
        }
        spec.rate = Some(r);
    }
    if let Some(m) = o.string("method")? {
        spec.method = m.to_uppercase();
    }
    spec.headers = o.string_pairs("headers")?;
    if let Some(t) = o.duration("timeout")? {
        spec.timeout = t;
    }
    spec.validate()
        .map_err(|e| throw("usage", format!("{func}(): {e}")))?;
    Ok(spec)
}

/// Runs one sample on the run's shared sampler (connections are kept and reused).
fn run_sample(st: &HostState, spec: &SampleSpec) -> Result<SampleReport, Error> {
    let sampler = st.sampler.get_or_init(sampler::Sampler::new);
    let token = st.token();
    let report = st
        .runtime
        .block_on(sampler::sample(sampler, spec, &token))
        .map_err(|e| throw("usage", e.to_string()))?;
    if report.cancelled || st.cancel.is_cancelled() {
        return Err(terminated(st));
    }
    if let Some(short) = &report.rate_shortfall {
        show(st, [lines::rate_shortfall(&spec.url, short)]);
    }
    Ok(report)
}

fn to_map<T: serde::Serialize>(v: &T) -> Map {
    rhai::serde::to_dynamic(v)
        .ok()
        .and_then(|d| d.try_cast::<Map>())
        .unwrap_or_default()
}

fn report_map(r: &SampleReport) -> Map {
    let mut m = to_map(&r.stats);
    m.insert(
        "target_rate".into(),
        r.target_rate.map(Dynamic::from).unwrap_or(Dynamic::UNIT),
    );
    m.insert("achieved_rate".into(), r.achieved_rate.into());
    m.insert(
        "rate_shortfall".into(),
        r.rate_shortfall
            .clone()
            .map(Dynamic::from)
            .unwrap_or(Dynamic::UNIT),
    );
    m
}

/// Parses a threshold map; `sustained` is taken out of a `critical` map.
fn thresholds(func: &str, map: &Map) -> Result<(Thresholds, Option<Duration>), Error> {
    let mut pairs = Vec::new();
    let mut sustained = None;
    for (k, v) in map {
        if k == "sustained" {
            sustained =
                Some(duration(v).map_err(|e| throw("usage", format!("{func}(): sustained: {e}")))?);
            continue;
        }
        let n = number(v).ok_or_else(|| {
            throw(
                "usage",
                format!("{func}(): threshold `{k}` must be a number, got {v}"),
            )
        })?;
        pairs.push((k.to_string(), n));
    }
    let t = Thresholds::from_pairs(pairs).map_err(|e| throw("usage", format!("{func}(): {e}")))?;
    Ok((t, sustained))
}

/// Converts what a monitor closure returned into tick statistics: `true`/`false`, a
/// sample-like map, or `()` (ran without throwing: healthy). Anything else is an error.
fn closure_stats(v: &Dynamic, took: Duration) -> Result<SampleStats, String> {
    if let Ok(b) = v.as_bool() {
        return Ok(monitor::check_stats(b, took));
    }
    if let Some(m) = v.read_lock::<Map>() {
        return Ok(monitor::figures_stats(|k| m.get(k).and_then(number), took));
    }
    if v.is_unit() {
        // The closure ran to its end without throwing: a healthy tick.
        return Ok(monitor::check_stats(true, took));
    }
    Err(format!(
        "the monitor closure returned {} `{v}`, which says neither healthy nor failing: \
         return true/false, a sample map (such as sample(url)), or nothing; counted as a failed tick",
        v.type_name()
    ))
}

/// Calls `name` in the latest version of the script (edits apply at the next tick), if the
/// script defines it with `arity` parameters.
fn call_latest(
    ctx: &NativeCallContext,
    st: &HostState,
    name: &str,
    args: Vec<Dynamic>,
) -> Option<Result<Dynamic, Error>> {
    st.script.call(ctx.engine(), name, args)
}

enum Target {
    Url(String),
    Closure(FnPtr),
}

impl Target {
    /// The target as reports show it: the URL, or `closure NAME`.
    fn label(&self) -> String {
        match self {
            Target::Url(u) => u.clone(),
            Target::Closure(f) => format!("closure {}", f.fn_name()),
        }
    }
}

enum WarnSource {
    Fixed(Thresholds),
    /// A script function (`fn thresholds()`), looked up again at every tick.
    Named(String),
    Closure(FnPtr),
}

/// Shows presentation lines on the run's console (`present::metric` decides their look).
fn show(st: &HostState, lines: impl IntoIterator<Item = Line>) {
    for line in lines {
        st.console.show(&crate::host::present::metric(&line));
    }
}

/// Shows the summary line of a `sample()`, unless the REPL shows the result itself.
fn show_sample(ctx: &NativeCallContext, st: &HostState, url: &str, r: &SampleReport) {
    let line = lines::sample(url, &r.stats);
    if !st.hold_line(ctx.call_level(), &line.text) {
        show(st, [line]);
    }
}

/// Keeps a result of `monitor` or `collect` in the current phase's record (it goes into
/// report.json). The one place these functions write the run's pipeline.
fn record_metrics(st: &HostState, key: &str, value: serde_json::Value) {
    st.pipeline.emit(Event::Metrics {
        key: key.to_string(),
        value,
    });
}

/// Asks the run to roll back (monitoring reached critical) and returns the error that
/// stops the script.
fn request_rollback(st: &HostState, reason: String) -> Error {
    st.pipeline.emit(Event::RollbackRequested {
        reason: reason.clone(),
    });
    control(Control::RollbackRequested, reason)
}

/// Reads the monitor's options: its settings, the sample of a URL target, and where the
/// warning limits come from.
fn monitor_options(
    st: &HostState,
    target: &Target,
    o: &Opts,
) -> Result<(MonitorConfig, Option<SampleSpec>, WarnSource), Error> {
    let plan = MonitorPlan::new(
        o.duration("duration")?.unwrap_or(monitor::DEFAULT_DURATION),
        o.duration("interval")?.unwrap_or(monitor::DEFAULT_INTERVAL),
        st.dry_run(),
    )
    .map_err(|e| throw("usage", e.to_string()))?;
    let requests = o.int("requests")?.unwrap_or(10);
    let spec = match target {
        Target::Url(u) => {
            let mut sub = Map::new();
            for k in ["concurrency", "timeout", "method", "headers"] {
                if let Some(v) = o.get(k) {
                    sub.insert(k.into(), v.clone());
                }
            }
            sub.insert("requests".into(), requests.into());
            let mut spec = spec(
                "monitor",
                u,
                &Opts::new("monitor", sub, SAMPLE_OPTS)?,
                requests,
            )?;
            // A tick fits its interval: no request starts after it, and without a
            // `timeout` a request gets at most the interval. A target that hangs then fails
            // each tick on schedule, like a 5xx storm, instead of stretching every tick to
            // `requests × 10 s`.
            spec.start_within = Some(plan.interval);
            if o.get("timeout").is_none() {
                spec.timeout = spec.timeout.min(plan.interval);
            }
            Some(spec)
        }
        Target::Closure(_) => None,
    };
    let mut default_warning = false;
    let warn = match o.get("thresholds") {
        Some(v) if v.is_fnptr() => {
            let f = v.clone().cast::<FnPtr>();
            if f.is_anonymous() {
                WarnSource::Closure(f)
            } else {
                WarnSource::Named(f.fn_name().to_string())
            }
        }
        Some(_) => {
            WarnSource::Fixed(thresholds("monitor", &o.map("thresholds")?.unwrap_or_default())?.0)
        }
        None => {
            let defines = st.script.lookup("thresholds", 0).is_some();
            if defines {
                WarnSource::Named("thresholds".into())
            } else {
                default_warning = true;
                WarnSource::Fixed(monitor::default_warning())
            }
        }
    };
    let (critical, mut sustained) = match o.map("critical")? {
        Some(m) => thresholds("monitor", &m)?,
        None => (Thresholds::default(), None),
    };
    if let Some(s) = o.duration("sustained")? {
        sustained = Some(s);
    }
    let in_phase = st.pipeline.read(|p| p.in_phase);
    let rollback_on_critical = o.boolean("rollback_on_critical")?.unwrap_or(in_phase);
    let config = MonitorConfig {
        plan,
        critical,
        sustained,
        default_warning,
        rollback_on_critical,
    };
    Ok((config, spec, warn))
}

/// Takes one tick's sample: the URL's, or what the closure says. A closure that throws
/// (or returns something unclear) makes a failed tick; stopping and rollback requests
/// come back as errors.
fn measure(
    ctx: &NativeCallContext,
    st: &HostState,
    target: &Target,
    spec: Option<&SampleSpec>,
    number: u64,
) -> Result<SampleStats, Error> {
    match (target, spec) {
        (Target::Url(_), Some(spec)) => Ok(run_sample(st, spec)?.stats),
        (Target::Closure(f), _) => {
            let t0 = Instant::now();
            match f.call_within_context::<Dynamic>(ctx, ()) {
                Ok(v) => Ok(closure_stats(&v, t0.elapsed()).unwrap_or_else(|e| {
                    show(st, [lines::check_failed(number, &e)]);
                    monitor::failed_stats(t0.elapsed())
                })),
                Err(e)
                    if is_terminated(&e) || control_of(&e) == Some(Control::RollbackRequested) =>
                {
                    Err(e)
                }
                Err(e) => {
                    let msg = message_of(&e);
                    show(
                        st,
                        [lines::check_failed(
                            number,
                            msg.lines().next().unwrap_or_default(),
                        )],
                    );
                    Ok(monitor::failed_stats(t0.elapsed()))
                }
            }
        }
        (Target::Url(_), None) => Err(throw("internal", "monitor target without a sample spec")),
    }
}

/// The warning limits of this tick: fixed, or what the script's function returns now.
fn warning_limits(
    ctx: &NativeCallContext,
    st: &HostState,
    warn: &WarnSource,
) -> Result<Thresholds, Error> {
    match warn {
        WarnSource::Fixed(t) => Ok(t.clone()),
        WarnSource::Named(name) => match call_latest(ctx, st, name, vec![]) {
            Some(Ok(v)) => Ok(thresholds("monitor", &v.try_cast::<Map>().unwrap_or_default())?.0),
            Some(Err(e)) => Err(throw(
                "usage",
                format!("monitor(): fn {name}() failed: {}", message_of(&e)),
            )),
            None => Err(throw(
                "usage",
                format!("monitor(): the script no longer defines fn {name}()"),
            )),
        },
        WarnSource::Closure(f) => {
            let v = f.call_within_context::<Dynamic>(ctx, ())?;
            Ok(thresholds("monitor", &v.try_cast::<Map>().unwrap_or_default())?.0)
        }
    }
}

/// Calls `fn on_alert(level, info)` for a change of level; a failing hook is reported and
/// monitoring goes on, unless the run is stopping.
fn call_on_alert(
    ctx: &NativeCallContext,
    st: &HostState,
    target: &str,
    t: &MonitorTick,
) -> Result<(), Error> {
    let mut info = Map::new();
    info.insert("level".into(), (t.level.as_u8() as i64).into());
    info.insert("name".into(), t.level.name().into());
    info.insert("previous".into(), (t.previous_level.as_u8() as i64).into());
    info.insert("reason".into(), t.reason.clone().into());
    // Hooks get what the terminal shows: a URL may carry a secret token.
    info.insert("target".into(), st.console.mask(target).into());
    info.insert("stats".into(), to_map(&t.stats).into());
    info.insert(
        "breaches".into(),
        t.breaches
            .iter()
            .cloned()
            .map(Dynamic::from)
            .collect::<Array>()
            .into(),
    );
    match call_latest(
        ctx,
        st,
        "on_alert",
        vec![(t.level.as_u8() as i64).into(), info.into()],
    ) {
        Some(Err(e)) if is_terminated(&e) => Err(e),
        Some(Err(e)) => {
            show(st, [lines::hook_failed(&message_of(&e))]);
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Runs a monitor: the binding around [`Monitor`], which judges the ticks. This function
/// sleeps to each tick, measures, renders what the tick did, calls `on_alert`, and records
/// the summary however the monitor ends.
fn monitor_impl(ctx: &NativeCallContext, target: Target, o: Opts) -> Result<Map, Error> {
    let st = state(ctx)?;
    let (config, spec, warn) = monitor_options(&st, &target, &o)?;
    let mut m = Monitor::new(target.label(), config);
    let started = Instant::now();
    let record = |m: &Monitor, stopped: Stopped| {
        let summary = m.summary(started.elapsed(), stopped);
        record_metrics(
            &st,
            "monitor",
            serde_json::to_value(&summary).unwrap_or_default(),
        );
        summary
    };
    show(&st, lines::monitor_start(m.target(), m.plan()));
    // On a terminal one line counts down to the next tick and shows the alert level.
    let activity = st.console.progress(&format!("monitor {}", m.target()));
    let ticks = m.plan().ticks;
    for index in 0..ticks {
        let due = started + m.plan().due(index);
        let now = Instant::now();
        let level = m.level().name();
        let line = |left| progress::monitor_line(index + 1, ticks, left, level);
        if due > now && st.sleep_counting(&activity, due - now, line).is_err() {
            record(&m, Stopped::Interrupted);
            return Err(terminated(&st));
        }
        activity.status(&format!(
            "tick {}/{ticks} measuring · level {level}",
            index + 1
        ));
        let stats = match measure(ctx, &st, &target, spec.as_ref(), index + 1) {
            Ok(stats) => stats,
            Err(e) => {
                if is_terminated(&e) {
                    record(&m, Stopped::Interrupted);
                } else if control_of(&e) == Some(Control::RollbackRequested) {
                    // The closure called trigger_rollback(): stop watching and roll back now.
                    record(&m, Stopped::Rollback);
                }
                return Err(e);
            }
        };
        let limits = warning_limits(ctx, &st, &warn)?;
        let t = m.tick(started.elapsed(), stats, &limits);
        show(&st, lines::monitor_tick(&t));
        if t.change.is_some() {
            call_on_alert(ctx, &st, m.target(), &t)?;
        }
        if let Some(reason) = t.rollback {
            record(&m, Stopped::Critical);
            return Err(request_rollback(&st, reason));
        }
    }
    activity.finish();
    let summary = record(&m, Stopped::Completed);
    show(&st, [lines::monitor_done(&summary)]);
    Ok(to_map(&summary))
}

fn collect_impl(ctx: &NativeCallContext, url: &str, o: Opts) -> Result<Array, Error> {
    let st = state(ctx)?;
    let offsets: Vec<Duration> = match o.array("offsets")? {
        Some(list) => list
            .iter()
            .map(|v| duration(v).map_err(|e| throw("usage", format!("collect(): offsets: {e}"))))
            .collect::<Result<_, _>>()?,
        None => vec![
            Duration::ZERO,
            Duration::from_secs(300),
            Duration::from_secs(900),
        ],
    };
    if offsets.is_empty() {
        return Err(throw(
            "usage",
            "collect(): offsets is empty: give at least one, such as [\"0s\", \"5m\", \"15m\"]",
        ));
    }
    let mut sub = Map::new();
    for k in ["requests", "concurrency", "timeout", "method", "headers"] {
        if let Some(v) = o.get(k) {
            sub.insert(k.into(), v.clone());
        }
    }
    let spec = spec("collect", url, &Opts::new("collect", sub, SAMPLE_OPTS)?, 20)?;
    let started = Instant::now();
    let mut rounds = Array::new();
    let mut json_rounds = Vec::new();
    for (i, offset) in offsets.iter().enumerate() {
        let due = started + *offset;
        let now = Instant::now();
        if due > now {
            st.sleep(due - now).map_err(|_| terminated(&st))?;
        }
        let report = run_sample(&st, &spec)?;
        show(
            &st,
            [lines::collect_round(
                i + 1,
                offsets.len(),
                *offset,
                &report.stats,
            )],
        );
        let mut m = report_map(&report);
        m.insert("offset".into(), format_duration(*offset).into());
        m.insert("offset_ms".into(), (offset.as_millis() as i64).into());
        let mut j = serde_json::to_value(&report.stats).unwrap_or_default();
        if let Some(obj) = j.as_object_mut() {
            obj.insert("offset".into(), json!(format_duration(*offset)));
        }
        json_rounds.push(j);
        rounds.push(m.into());
    }
    record_metrics(&st, "rounds", serde_json::Value::Array(json_rounds));
    Ok(rounds)
}

/// Sends a Prometheus HTTP API request and returns its `data`, or its error as a script error.
fn prometheus_get(
    ctx: &NativeCallContext,
    base: &str,
    path: &str,
    params: &[(&str, String)],
) -> Result<serde_json::Value, Error> {
    let st = state(ctx)?;
    let base = base.trim_end_matches('/');
    let url = reqwest::Url::parse_with_params(&format!("{base}{path}"), params).map_err(|e| {
        throw(
            "url",
            format!("prometheus: invalid base URL \"{base}\": {e}"),
        )
    })?;
    let req = crate::sys::http::Request::get(url.as_str());
    let resp = st
        .block_on(st.http.send(&req))
        .map_err(|_| terminated(&st))?
        .map_err(|e| {
            let mut extra = Map::new();
            extra.insert("sent".into(), e.kind.request_sent().into());
            throw_with(
                e.kind.as_str(),
                format!("prometheus at {base}: {}", e.message),
                extra,
            )
        })?;
    let body: serde_json::Value = serde_json::from_slice(&resp.body).map_err(|e| {
        throw(
            "prometheus",
            format!(
                "prometheus at {base} answered status {} with a body that is not JSON: {e}",
                resp.status
            ),
        )
    })?;
    if body["status"] != "success" {
        let mut extra = Map::new();
        extra.insert("status".into(), (resp.status as i64).into());
        return Err(throw_with(
            "prometheus",
            format!(
                "prometheus query failed ({}): {}",
                body["errorType"].as_str().unwrap_or("error"),
                body["error"].as_str().unwrap_or("no message")
            ),
            extra,
        ));
    }
    Ok(body["data"].clone())
}

/// Runs an instant query and converts its result; errors point at the script's call.
fn instant_query(ctx: &NativeCallContext, base: &str, promql: &str) -> Result<Dynamic, Error> {
    let data = prometheus_get(ctx, base, "/api/v1/query", &[("query", promql.to_string())])
        .map_err(|e| at_call(ctx, e))?;
    Ok(prometheus_result(&data))
}

fn sample_value(v: &serde_json::Value) -> f64 {
    v.get(1)
        .and_then(|x| x.as_str())
        .and_then(|x| x.parse::<f64>().ok())
        .unwrap_or(f64::NAN)
}

fn labels(v: &serde_json::Value) -> Dynamic {
    rhai::serde::to_dynamic(v.get("metric").cloned().unwrap_or_else(|| json!({})))
        .unwrap_or(Dynamic::UNIT)
}

/// Converts a Prometheus `data` object into script values.
fn prometheus_result(data: &serde_json::Value) -> Dynamic {
    let result = &data["result"];
    match data["resultType"].as_str() {
        Some("scalar") => sample_value(result).into(),
        Some("string") => result
            .get(1)
            .and_then(|s| s.as_str())
            .unwrap_or_default()
            .into(),
        Some("vector") => result
            .as_array()
            .map(|rows| {
                rows.iter()
                    .map(|r| {
                        let mut m = Map::new();
                        m.insert("labels".into(), labels(r));
                        m.insert("value".into(), sample_value(&r["value"]).into());
                        Dynamic::from(m)
                    })
                    .collect::<Array>()
            })
            .unwrap_or_default()
            .into(),
        Some("matrix") => result
            .as_array()
            .map(|rows| {
                rows.iter()
                    .map(|r| {
                        let values: Array = r["values"]
                            .as_array()
                            .map(|vs| {
                                vs.iter()
                                    .map(|v| {
                                        let t =
                                            v.get(0).and_then(|t| t.as_f64()).unwrap_or_default();
                                        let pair: Array = vec![t.into(), sample_value(v).into()];
                                        Dynamic::from(pair)
                                    })
                                    .collect()
                            })
                            .unwrap_or_default();
                        let mut m = Map::new();
                        m.insert("labels".into(), labels(r));
                        m.insert("values".into(), values.into());
                        Dynamic::from(m)
                    })
                    .collect::<Array>()
            })
            .unwrap_or_default()
            .into(),
        _ => Dynamic::UNIT,
    }
}

#[export_module]
pub mod metrics_api {
    use super::*;

    /// Sends 20 GET requests to `url` on a kept-alive connection and returns latency
    /// percentiles and error rates: `#{count, ok, errors, error_kinds, status_counts,
    /// error_rate, rate_5xx, min_ms, mean_ms, p50_ms, p90_ms, p95_ms, p99_ms, max_ms, rps,
    /// duration_ms}`. A target that is down gives errors counted by kind (`connect`,
    /// `timeout`, `reset`, `protocol`, `body`, `dns`, `tls`, ...), not an exception.
    ///
    /// It fails closed: `error_rate` counts every request without a successful answer
    /// (no response at all, 4xx, 5xx); `rate_5xx` only 5xx answers. Latencies are measured
    /// over successful responses (status < 400); with none they are `()`, never 0, so
    /// `m.p95_ms < 500` is false for a service that does not answer.
    ///
    /// ```rhai
    /// let m = sample("http://127.0.0.1:8080/health");
    /// if m.p95_ms == () || m.p95_ms > 500 { log::warn(`slow or down: p95 ${m.p95_ms} ms`); }
    /// if m.error_rate > 0.05 { throw `${m.count - m.ok} of ${m.count} requests failed`; }
    /// ```
    #[rhai_fn(return_raw)]
    pub fn sample(ctx: NativeCallContext, url: &str) -> Result<Map, Error> {
        let st = state(&ctx)?;
        let spec = super::spec("sample", url, &Opts::none("sample"), 20)?;
        let r = run_sample(&st, &spec)?;
        show_sample(&ctx, &st, url, &r);
        Ok(report_map(&r))
    }

    /// Samples with options: `requests` (a count) or `duration`, `concurrency` (workers
    /// sending back to back; default 1) or `rate` (requests per second, paced whatever the
    /// latency; a rate that cannot be reached is reported in `rate_shortfall`), `method`,
    /// `headers`, `timeout`.
    ///
    /// ```rhai
    /// let m = sample(url, #{ requests: 200, concurrency: 4 });
    /// let paced = sample(url, #{ duration: "10s", rate: 20 });
    /// ```
    #[rhai_fn(name = "sample", return_raw)]
    pub fn sample_with(ctx: NativeCallContext, url: &str, options: Map) -> Result<Map, Error> {
        let st = state(&ctx)?;
        let o = Opts::new("sample", options, SAMPLE_OPTS)?;
        let spec = super::spec("sample", url, &o, 20)?;
        let r = run_sample(&st, &spec)?;
        show_sample(&ctx, &st, url, &r);
        Ok(report_map(&r))
    }

    /// Watches a URL (or a closure returning a sample-like map or true/false; a map without
    /// a latency leaves it unknown, which breaches latency limits) for
    /// `duration` (default 60 s), one tick every `interval` (default 10 s) of `requests`
    /// requests (default 10). `thresholds` (warning) and `critical` name limits on
    /// `p50_ms`, `p95_ms`, `p99_ms`, `error_rate`, `rate_5xx`, `min_rps` (successful
    /// responses per second); `critical` may hold
    /// `sustained: "5m"`. Consecutive failing ticks raise the alert level 1 → 2 → 3; a healthy
    /// tick resets it; `fn on_alert(level, info)` is called at each change. Inside a phase,
    /// level 3 rolls back (`rollback_on_critical`). `thresholds` may be a function
    /// (`Fn("thresholds")`, or a script `fn thresholds()`), read again at every tick. A
    /// closure target may call `trigger_rollback(reason)` to stop and roll back at once.
    /// Returns the per-tick series, alerts, highest level, and the
    /// availability/performance/stability score with a 0-5 `phase_score`.
    ///
    /// Each tick starts no request after `interval`, and `timeout` defaults to the
    /// interval (at most 10 s), so a target that hangs fails its ticks on schedule.
    /// A target that does not answer is critical, like a 5xx storm: requests with no
    /// response (refused, reset, timed out, DNS, TLS, not HTTP) count in `error_rate`
    /// (which includes 4xx and 5xx answers; `rate_5xx` counts only 5xx, so limit
    /// `error_rate` to catch a dead service too). A tick with no successful response has
    /// unknown latency, which breaches every latency limit. Unless `critical` names
    /// `error_rate`, `error_rate` above 5 % (or above the warning `error_rate`, if higher) is
    /// critical. Rate limits are fractions: `0.05` is 5 %. Each failing tick line names the
    /// limits broken, rates in %, and why its level is what it is.
    ///
    /// ```rhai
    /// phase("Monitoring", || {
    ///     monitor(url + "/health", #{ duration: "15m", interval: "60s",
    ///         thresholds: #{ p95_ms: 500, error_rate: 0.01 },
    ///         critical: #{ p95_ms: 1000, error_rate: 0.05, sustained: "5m" } })
    /// });
    /// ```
    #[rhai_fn(return_raw)]
    pub fn monitor(ctx: NativeCallContext, target: Dynamic, options: Map) -> Result<Map, Error> {
        let o = Opts::new("monitor", options, MONITOR_OPTS)?;
        let target = if target.is_fnptr() {
            Target::Closure(target.cast::<FnPtr>())
        } else if target.is_string() {
            Target::Url(target.to_string())
        } else {
            return Err(throw(
                "usage",
                format!("monitor(): the target must be a URL or a closure, got {target}"),
            ));
        };
        monitor_impl(&ctx, target, o)
    }

    /// Watches a URL or closure with the defaults: 60 s, a tick every 10 s of 10 requests,
    /// a warning on any failed request, critical above 5 % failed requests.
    ///
    /// ```rhai
    /// let summary = monitor("http://127.0.0.1:8080/health");
    /// ```
    #[rhai_fn(name = "monitor", return_raw)]
    pub fn monitor_default(ctx: NativeCallContext, target: Dynamic) -> Result<Map, Error> {
        monitor(ctx, target, Map::new())
    }

    /// Collects metrics in rounds at offsets from now (default the reference rounds:
    /// immediately, after 5 minutes and after 15 minutes), `requests` per round (default
    /// 20). Returns one sample map per round, with its `offset`.
    ///
    /// ```rhai
    /// let rounds = collect(url, #{ offsets: ["0s", "5m", "15m"], requests: 50 });
    /// print(rounds[2].p95_ms - rounds[0].p95_ms);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn collect(ctx: NativeCallContext, url: &str, options: Map) -> Result<Array, Error> {
        collect_impl(&ctx, url, Opts::new("collect", options, COLLECT_OPTS)?)
    }
}

#[export_module]
pub mod prometheus_api {
    use super::*;

    /// Runs an instant PromQL query against a Prometheus server and returns a number for a
    /// scalar, or a list of `#{labels, value}` for a vector. Errors from the server carry
    /// its message.
    ///
    /// ```rhai
    /// let up = prometheus::query("http://127.0.0.1:9090", "up{job=\"api\"}");
    /// if up.len() == 0 || up[0].value != 1.0 { throw "api is down"; }
    /// ```
    #[rhai_fn(return_raw)]
    pub fn query(ctx: NativeCallContext, base_url: &str, promql: &str) -> Result<Dynamic, Error> {
        instant_query(&ctx, base_url, promql)
    }

    /// Runs a query that must give exactly one number (a scalar, or a vector of one series).
    /// NaN (such as an error ratio over no traffic) and infinities are errors, never a
    /// value that silently passes a comparison.
    ///
    /// ```rhai
    /// let rate = prometheus::value(prom, "sum(rate(http_requests_total{code=~\"5..\"}[5m]))");
    /// ```
    #[rhai_fn(return_raw)]
    pub fn value(ctx: NativeCallContext, base_url: &str, promql: &str) -> Result<f64, Error> {
        let v = instant_query(&ctx, base_url, promql)?;
        // NaN (0/0: an error ratio with no traffic, as when the service is down) or an
        // infinity compares false with every limit, so `value > 0.05` would pass: refuse it.
        let finite = |f: f64| -> Result<f64, Error> {
            if f.is_finite() {
                Ok(f)
            } else {
                Err(throw(
                    "prometheus",
                    format!(
                        "prometheus::value(): \"{promql}\" gave {f}, not a number a limit can judge \
                         (NaN is usually 0/0: a ratio over no requests, as when the service is down); \
                         check the traffic, or write the query so that no data has a value (`... or vector(0)`)"
                    ),
                ))
            }
        };
        if let Ok(f) = v.as_float() {
            return finite(f);
        }
        if let Some(list) = v.read_lock::<Array>() {
            if list.len() == 1 {
                if let Some(m) = list[0].read_lock::<Map>() {
                    if let Some(f) = m.get("value").and_then(|x| x.as_float().ok()) {
                        return finite(f);
                    }
                }
            }
            return Err(throw(
                "prometheus",
                format!("prometheus::value(): \"{promql}\" gave {} series, expected exactly one; aggregate it (sum, max) or use prometheus::query", list.len()),
            ));
        }
        Err(throw(
            "prometheus",
            format!("prometheus::value(): \"{promql}\" gave no number"),
        ))
    }

    /// Runs a range query over the last `range` (such as `"15m"`) at `step` resolution and
    /// returns a list of `#{labels, values}` with `values` as `[time, value]` pairs.
    ///
    /// ```rhai
    /// let series = prometheus::query_range(prom, "rate(http_requests_total[1m])", "15m", "30s");
    /// ```
    #[rhai_fn(return_raw)]
    pub fn query_range(
        ctx: NativeCallContext,
        base_url: &str,
        promql: &str,
        range: Dynamic,
        step: Dynamic,
    ) -> Result<Dynamic, Error> {
        let range = duration(&range)
            .map_err(|e| throw("usage", format!("prometheus::query_range(): range: {e}")))?;
        let step = duration(&step)
            .map_err(|e| throw("usage", format!("prometheus::query_range(): step: {e}")))?;
        if step.is_zero() {
            return Err(throw(
                "usage",
                "prometheus::query_range(): step must be more than 0s",
            ));
        }
        let end = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or_default();
        let data = prometheus_get(
            &ctx,
            base_url,
            "/api/v1/query_range",
            &[
                ("query", promql.to_string()),
                ("start", format!("{:.3}", end - range.as_secs_f64())),
                ("end", format!("{end:.3}")),
                ("step", format!("{}", step.as_secs_f64())),
            ],
        )
        .map_err(|e| at_call(&ctx, e))?;
        Ok(prometheus_result(&data))
    }
}
