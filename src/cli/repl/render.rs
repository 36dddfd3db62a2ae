//! How the REPL shows values: scalars as Rhai writes them, maps and arrays as indented
//! JSON-like text, and a sample result (`p50_ms`, `p95_ms`, `p99_ms`, `error_rate`, `rps`)
//! as a small table of percentiles and rates.

use rhai::{Array, Dynamic, Map};

/// Values whose one-line form is longer than this are spread over lines.
const WIDTH: usize = 76;

/// The keys that make a map a sample result.
const SAMPLE_KEYS: [&str; 5] = ["p50_ms", "p95_ms", "p99_ms", "error_rate", "rps"];

/// Turns a Rust type name into the name scripts know it by (`Engine::map_type_name`).
pub type TypeNames<'a> = &'a dyn Fn(&str) -> String;

/// The keys that make a map an HTTP response (`http::get` and the other probes).
const RESPONSE_KEYS: [&str; 5] = ["status", "ok", "headers", "body", "latency_ms"];

/// The characters of a response body a preview shows.
const BODY_PREVIEW: usize = 200;

/// Renders a value for display.
pub fn render(value: &Dynamic, names: TypeNames) -> String {
    if let Some(map) = as_map(value) {
        if SAMPLE_KEYS.iter().all(|k| map.contains_key(*k)) {
            return sample_table(&map, names);
        }
        if RESPONSE_KEYS.iter().all(|k| map.contains_key(*k)) {
            return response_summary(&map, names);
        }
    }
    pretty(value, 0, names)
}

/// True when `value` is a sample result, which [`render`] shows as a table.
pub fn is_sample(value: &Dynamic) -> bool {
    as_map(value).is_some_and(|map| SAMPLE_KEYS.iter().all(|k| map.contains_key(*k)))
}

/// An HTTP response: its status, latency and content type on one line, then a one-line
/// preview of the body, then any other fields (`attempts`, `dry_run`); the whole body and
/// headers stay in the value.
fn response_summary(map: &Map, names: TypeNames) -> String {
    let status = map
        .get("status")
        .and_then(|v| v.as_int().ok())
        .map(|s| format!("status {s}"))
        .unwrap_or_else(|| "status unknown".into());
    let latency = number(map.get("latency_ms"))
        .map(|ms| format!("{ms:.1} ms"))
        .unwrap_or_else(|| "latency unknown".into());
    let mut head = vec![status, latency];
    if let Some(kind) = map
        .get("headers")
        .and_then(as_map)
        .and_then(|h| h.get("content-type").map(|v| v.to_string()))
    {
        head.push(kind);
    }
    let body = map
        .get("body")
        .and_then(|v| {
            v.read_lock::<rhai::ImmutableString>()
                .map(|s| s.to_string())
        })
        .unwrap_or_default();
    let mut out = head.join(" · ");
    out.push('\n');
    out.push_str(&format!("body: {}", preview(&body, BODY_PREVIEW)));
    let rest: Map = map
        .iter()
        .filter(|(k, _)| !RESPONSE_KEYS.contains(&k.as_str()) && k.as_str() != "json")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if !rest.is_empty() {
        out.push('\n');
        out.push_str(&pretty(&Dynamic::from_map(rest), 0, names));
    }
    out.push_str("\n(.body, .json and .headers hold the whole response)");
    out
}

/// A body on one line: runs of white space (new lines included) become one space, and a
/// body longer than `max` characters shows its first `max` and its size: `… (N bytes)`.
pub fn preview(body: &str, max: usize) -> String {
    if body.is_empty() {
        return "(empty)".into();
    }
    let one_line = body.split_whitespace().collect::<Vec<_>>().join(" ");
    // Control characters other than white space would move the cursor or ring the bell.
    let one_line: String = one_line
        .chars()
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect();
    if one_line.chars().count() <= max {
        return one_line;
    }
    let head: String = one_line.chars().take(max).collect();
    format!("{}… ({} bytes)", head.trim_end(), body.len())
}

/// Renders a value on one line (for `:scope` and nested values that fit).
pub fn compact(value: &Dynamic, names: TypeNames) -> String {
    if let Some(map) = as_map(value) {
        if map.is_empty() {
            return "{}".into();
        }
        let items: Vec<String> = map
            .iter()
            .map(|(k, v)| format!("{}: {}", quote(k), compact(v, names)))
            .collect();
        return format!("{{ {} }}", items.join(", "));
    }
    if let Some(arr) = as_array(value) {
        let items: Vec<String> = arr.iter().map(|v| compact(v, names)).collect();
        return format!("[{}]", items.join(", "));
    }
    scalar(value, names)
}

fn pretty(value: &Dynamic, indent: usize, names: TypeNames) -> String {
    let one_line = compact(value, names);
    if indent + one_line.chars().count() <= WIDTH && !one_line.contains('\n') {
        return one_line;
    }
    let pad = "  ".repeat(indent + 1);
    let close = "  ".repeat(indent);
    if let Some(map) = as_map(value) {
        let items: Vec<String> = map
            .iter()
            .map(|(k, v)| format!("{pad}{}: {}", quote(k), pretty(v, indent + 1, names)))
            .collect();
        return format!("{{\n{}\n{close}}}", items.join(",\n"));
    }
    if let Some(arr) = as_array(value) {
        let items: Vec<String> = arr
            .iter()
            .map(|v| format!("{pad}{}", pretty(v, indent + 1, names)))
            .collect();
        return format!("[\n{}\n{close}]", items.join(",\n"));
    }
    one_line
}

fn as_map(value: &Dynamic) -> Option<Map> {
    value.read_lock::<Map>().map(|m| m.clone())
}

fn as_array(value: &Dynamic) -> Option<Array> {
    value.read_lock::<Array>().map(|a| a.clone())
}

fn scalar(value: &Dynamic, names: TypeNames) -> String {
    if let Some(s) = value.read_lock::<rhai::ImmutableString>() {
        return quote(s.as_str());
    }
    if value.is_unit() {
        return "()".into();
    }
    if let Ok(c) = value.as_char() {
        return format!("{c:?}");
    }
    let shown = value.to_string();
    // A custom type without a text form shows as its Rust type name: use the script's.
    if shown == value.type_name() && shown.contains("::") {
        return format!("<{}>", names(value.type_name()));
    }
    shown
}

/// Quotes a string the JSON way (escapes included).
fn quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| format!("\"{s}\""))
}

fn number(v: Option<&Dynamic>) -> Option<f64> {
    let v = v?;
    v.as_float()
        .ok()
        .or_else(|| v.as_int().ok().map(|i| i as f64))
}

/// A sample result: a table of the percentiles and rates, then the other fields.
fn sample_table(map: &Map, names: TypeNames) -> String {
    let ms = |k: &str| {
        number(map.get(k))
            .map(|v| format!("{v:.1}"))
            // No successful response: the latency is unknown, not 0.
            .unwrap_or_else(|| "unknown".into())
    };
    let pct = |k: &str| {
        number(map.get(k))
            .map(|v| format!("{:.1} %", v * 100.0))
            .unwrap_or_else(|| "-".into())
    };
    let mut cols: Vec<(&str, String)> = vec![
        ("p50 ms", ms("p50_ms")),
        ("p95 ms", ms("p95_ms")),
        ("p99 ms", ms("p99_ms")),
        ("errors", pct("error_rate")),
    ];
    if map.contains_key("rate_5xx") {
        cols.push(("5xx", pct("rate_5xx")));
    }
    cols.push(("rps", ms("rps")));
    let widths: Vec<usize> = cols
        .iter()
        .map(|(h, v)| h.chars().count().max(v.chars().count()))
        .collect();
    let head: Vec<String> = cols
        .iter()
        .zip(&widths)
        .map(|((h, _), w)| format!("{h:>w$}"))
        .collect();
    let row: Vec<String> = cols
        .iter()
        .zip(&widths)
        .map(|((_, v), w)| format!("{v:>w$}"))
        .collect();
    let mut out = String::new();
    let count = ["requests", "count", "total"]
        .iter()
        .find_map(|k| map.get(*k).and_then(|v| v.as_int().ok()));
    if let Some(n) = count {
        out.push_str(&format!("sample of {n} requests\n"));
    }
    out.push_str(&format!("  {}\n  {}", head.join("  "), row.join("  ")));
    let shown = ["rate_5xx", "requests", "count", "total"];
    let rest: Map = map
        .iter()
        .filter(|(k, _)| !SAMPLE_KEYS.contains(&k.as_str()) && !shown.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if !rest.is_empty() {
        out.push('\n');
        out.push_str(&pretty(&Dynamic::from_map(rest), 0, names));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render_plain(value: &Dynamic) -> String {
        render(value, &|n: &str| n.to_string())
    }

    fn eval(script: &str) -> Dynamic {
        rhai::Engine::new()
            .eval::<Dynamic>(script)
            .expect("test script")
    }

    #[test]
    fn scalars_read_like_rhai() {
        assert_eq!(render_plain(&eval("42")), "42");
        assert_eq!(render_plain(&eval("\"a\\nb\"")), "\"a\\nb\"");
        assert_eq!(render_plain(&eval("true")), "true");
        assert_eq!(render_plain(&eval("'x'")), "'x'");
    }

    #[test]
    fn small_maps_stay_on_one_line_and_big_ones_are_indented() {
        assert_eq!(
            render_plain(&eval("#{a: 1, b: [1, 2]}")),
            "{ \"a\": 1, \"b\": [1, 2] }"
        );
        let long = render_plain(&eval(
            "#{ stdout: \"a fairly long line of output\", stderr: \"another long line of text\", code: 0 }",
        ));
        assert_eq!(
            long,
            "{\n  \"code\": 0,\n  \"stderr\": \"another long line of text\",\n  \"stdout\": \"a fairly long line of output\"\n}"
        );
    }

    #[test]
    fn response_bodies_are_previewed_on_one_line_with_their_size() {
        assert_eq!(preview("", 10), "(empty)");
        assert_eq!(preview("{\"ok\": true}", 200), "{\"ok\": true}");
        assert_eq!(preview("<p>\n  a\n  b\n</p>\n", 200), "<p> a b </p>");
        let html = format!("<html>{}</html>", "x".repeat(1000));
        let shown = preview(&html, 200);
        assert!(shown.starts_with("<html>xxx"), "{shown}");
        assert!(shown.ends_with("x… (1013 bytes)"), "{shown}");
        assert_eq!(
            shown.chars().count(),
            200 + "… (1013 bytes)".chars().count()
        );
        assert_eq!(preview("é".repeat(5).as_str(), 3), "ééé… (10 bytes)");
        assert_eq!(preview("a\u{1b}[2Jb", 20), "a\u{fffd}[2Jb");
    }

    #[test]
    fn responses_show_status_latency_type_and_a_preview() {
        let out = render_plain(&eval(&format!(
            "#{{ status: 200, ok: true, latency_ms: 3.26, headers: #{{ \"content-type\": \"text/html\" }}, body: \"<html>{}</html>\", json: (), attempts: 2 }}",
            "y".repeat(300)
        )));
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "status 200 · 3.3 ms · text/html", "{out}");
        assert!(lines[1].starts_with("body: <html>yyy"), "{out}");
        assert!(lines[1].ends_with("… (313 bytes)"), "{out}");
        assert_eq!(lines[2], "{ \"attempts\": 2 }", "{out}");
        assert_eq!(
            lines[3],
            "(.body, .json and .headers hold the whole response)"
        );
        assert_eq!(lines.len(), 4, "{out}");
    }

    #[test]
    fn sample_results_are_tables() {
        let out = render_plain(&eval(
            "#{ p50_ms: 12.0, p95_ms: 40.25, p99_ms: 95, error_rate: 0.005, rps: 48.0, requests: 200, status_counts: #{ \"200\": 199 } }",
        ));
        assert!(out.starts_with("sample of 200 requests\n"), "{out}");
        assert!(
            out.contains("p50 ms  p95 ms  p99 ms  errors   rps"),
            "{out}"
        );
        assert!(out.contains("12.0    40.2    95.0   0.5 %  48.0"), "{out}");
        assert!(out.contains("\"status_counts\""), "{out}");
    }
}
