//! Browser checks without a browser: the options of `browser::visit`/`browser::check`
//! (viewport, URL, error patterns), the screenshot file names, and the verdict of a visit
//! (what a gate finds wrong with it). The session that drives Chromium is `sys::browser`.

use std::time::Duration;

/// The options of `browser::visit`.
pub const VISIT_OPTS: &[&str] = &[
    "timeout",
    "wait_for",
    "viewport",
    "screenshot",
    "headers",
    "cookies",
    "allow_errors",
];

/// The options of `browser::check`: those of `visit` and what the page must show.
pub const CHECK_OPTS: &[&str] = &[
    "timeout",
    "wait_for",
    "viewport",
    "screenshot",
    "headers",
    "cookies",
    "allow_errors",
    "expect_text",
    "max_load_ms",
];

/// The viewport when none is given.
pub const DEFAULT_VIEWPORT: Viewport = Viewport {
    width: 1280,
    height: 800,
};

/// How long a visit may take (load, then `wait_for`) when no `timeout` is given.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// A browser window's size in CSS pixels (the screenshot's size in pixels).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Viewport {
    pub width: u32,
    pub height: u32,
}

impl std::fmt::Display for Viewport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}x{}", self.width, self.height)
    }
}

/// Parses a viewport written `WIDTHxHEIGHT` (`"1280x800"`, `"390x844"` for a phone).
pub fn parse_viewport(text: &str) -> Result<Viewport, String> {
    let bad = |why: &str| {
        format!(
            "bad viewport \"{text}\": {why}; write WIDTHxHEIGHT in pixels, such as \"1280x800\" or \"390x844\" for a phone"
        )
    };
    let (w, h) = text
        .trim()
        .split_once(['x', 'X'])
        .ok_or_else(|| bad("no `x` between width and height"))?;
    let num = |s: &str, what: &str| -> Result<u32, String> {
        let n: u32 = s
            .trim()
            .parse()
            .map_err(|_| bad(&format!("the {what} `{s}` is not a whole number")))?;
        if !(100..=8192).contains(&n) {
            return Err(bad(&format!("the {what} {n} is outside 100..8192 pixels")));
        }
        Ok(n)
    };
    Ok(Viewport {
        width: num(w, "width")?,
        height: num(h, "height")?,
    })
}

/// Checks that a page address is an absolute http(s) URL with a host.
pub fn check_url(text: &str) -> Result<(), String> {
    let hint = "give an absolute address such as \"http://127.0.0.1:8080/login\"";
    match url::Url::parse(text) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => Ok(()),
        Ok(u) => Err(format!(
            "bad URL \"{text}\": the scheme `{}` is not http or https; {hint}",
            u.scheme()
        )),
        Err(e) => Err(format!("bad URL \"{text}\": {e}; {hint}")),
    }
}

/// Console-error patterns a page may show without failing (`allow_errors`).
#[derive(Debug, Default, Clone)]
pub struct Allow {
    patterns: Vec<regex::Regex>,
}

impl Allow {
    /// Compiles the patterns; a bad one is an error naming it.
    pub fn new(patterns: &[String]) -> Result<Allow, String> {
        let patterns = patterns
            .iter()
            .map(|p| {
                regex::Regex::new(p)
                    .map_err(|e| format!("bad pattern in `allow_errors`: \"{p}\": {e}"))
            })
            .collect::<Result<_, _>>()?;
        Ok(Allow { patterns })
    }

    /// True when an error line matches one of the patterns.
    pub fn allows(&self, line: &str) -> bool {
        self.patterns.iter().any(|p| p.is_match(line))
    }

    /// The lines no pattern allows.
    pub fn unallowed<'a>(&self, lines: &'a [String]) -> Vec<&'a String> {
        lines.iter().filter(|l| !self.allows(l)).collect()
    }
}

/// A screenshot's file name: `NN-slug.png`, the slug made of the (already masked) URL's
/// host, port and path, so no secret can reach the name (`***` becomes nothing).
pub fn screenshot_name(n: usize, masked_url: &str) -> String {
    let rest = masked_url
        .split_once("://")
        .map(|(_, r)| r)
        .unwrap_or(masked_url);
    // No query or fragment: they carry tokens more often than names.
    let rest = rest.split(['?', '#']).next().unwrap_or_default();
    let rest = rest.rsplit_once('@').map(|(_, r)| r).unwrap_or(rest);
    let mut slug = String::new();
    for c in rest.chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c.to_ascii_lowercase());
        } else if !slug.ends_with('-') && !slug.is_empty() {
            slug.push('-');
        }
    }
    let mut slug: String = slug.trim_end_matches('-').chars().take(60).collect();
    while slug.ends_with('-') {
        slug.pop();
    }
    if slug.is_empty() {
        slug.push_str("page");
    }
    format!("{n:02}-{slug}.png")
}

/// What a visit saw, as `browser::visit` returns it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Visit {
    /// The HTTP status of the page's document; `None` when no response came.
    pub status: Option<u16>,
    /// Why the page could not be loaded at all (`net::ERR_CONNECTION_REFUSED`).
    pub load_error: Option<String>,
    /// Milliseconds from the navigation to the page's load event; `None`: it never came.
    pub load_ms: Option<u64>,
    pub title: String,
    /// `console.error` calls, uncaught exceptions and unhandled promise rejections.
    pub console_errors: Vec<String>,
    /// Requests of the page that failed (`GET http://.../app.js: 404`).
    pub failed_requests: Vec<String>,
    /// Requests a dry run blocked (`POST http://.../api/save`).
    pub blocked_requests: Vec<String>,
    /// Whether `wait_for` appeared (`None` when none was asked).
    pub wait_for_found: Option<bool>,
    /// The page's visible text, read only when a check expects a text.
    pub text: Option<String>,
    /// How long the visit waited in all.
    pub timeout: Duration,
}

/// What `browser::check` expects of a visit.
#[derive(Debug, Clone, Default)]
pub struct Expect {
    pub allow: Allow,
    pub wait_for: Option<String>,
    pub expect_text: Option<String>,
    pub max_load_ms: Option<u64>,
}

/// Everything wrong with a visit for a gate: empty when the page passes. The status must
/// be 2xx or 3xx, no console error or failed request (unless allowed by a pattern; failed
/// requests are matched too), `wait_for` found, `expect_text` shown, the load within
/// `max_load_ms`.
pub fn problems(v: &Visit, e: &Expect) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(err) = &v.load_error {
        out.push(format!("the page could not be loaded: {err}"));
    } else {
        match v.status {
            Some(s) if (200..400).contains(&s) => {}
            Some(s) => out.push(format!("status {s}, expected 2xx or 3xx")),
            None => out.push("no response for the page".to_string()),
        }
    }
    match v.load_ms {
        None if v.load_error.is_none() => out.push(format!(
            "the page did not fire its load event within {}",
            crate::core::duration::format_duration(v.timeout)
        )),
        Some(ms) => {
            if let Some(max) = e.max_load_ms {
                if ms > max {
                    out.push(format!("loaded in {ms} ms, over max_load_ms {max}"));
                }
            }
        }
        None => {}
    }
    let errors = e.allow.unallowed(&v.console_errors);
    if !errors.is_empty() {
        out.push(format!(
            "{} console error(s): {}",
            errors.len(),
            join_quoted(&errors)
        ));
    }
    let failed = e.allow.unallowed(&v.failed_requests);
    if !failed.is_empty() {
        out.push(format!(
            "{} failed request(s): {}",
            failed.len(),
            join_quoted(&failed)
        ));
    }
    if let (Some(sel), Some(false)) = (&e.wait_for, v.wait_for_found) {
        out.push(format!(
            "`{sel}` did not appear within {}",
            crate::core::duration::format_duration(v.timeout)
        ));
    }
    if let Some(want) = &e.expect_text {
        let shown = v.text.as_deref().unwrap_or_default();
        if !shown.contains(want.as_str()) {
            out.push(format!("the page does not show the text \"{want}\""));
        }
    }
    out
}

fn join_quoted(lines: &[&String]) -> String {
    let shown: Vec<String> = lines
        .iter()
        .take(5)
        .map(|l| format!("\"{}\"", crate::core::clip::clip_line(l, 200)))
        .collect();
    let more = if lines.len() > 5 {
        format!(" and {} more", lines.len() - 5)
    } else {
        String::new()
    };
    format!("{}{more}", shown.join(", "))
}

/// The message of a failed `browser::check`: the page, what failed, the screenshot.
pub fn check_message(url: &str, problems: &[String], screenshot: Option<&str>) -> String {
    let mut msg = format!("browser check of {url} failed: {}", problems.join("; "));
    match screenshot {
        Some(p) => msg.push_str(&format!("\nscreenshot: {p}")),
        None => msg.push_str("\nno screenshot (screenshot: false)"),
    }
    msg
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn viewports_parse_and_bad_ones_say_how_to_write_them() {
        assert_eq!(
            parse_viewport("390x844"),
            Ok(Viewport {
                width: 390,
                height: 844
            })
        );
        assert_eq!(
            parse_viewport(" 1280X800 ").map(|v| v.to_string()),
            Ok("1280x800".into())
        );
        let e = parse_viewport("wide").unwrap_err();
        assert!(
            e.contains("bad viewport \"wide\"") && e.contains("1280x800"),
            "{e}"
        );
        assert!(parse_viewport("10x800")
            .unwrap_err()
            .contains("outside 100..8192"));
        assert!(parse_viewport("axb")
            .unwrap_err()
            .contains("`a` is not a whole number"));
        assert!(parse_viewport("1280x").is_err());
    }

    #[test]
    fn urls_must_be_absolute_http() {
        assert!(check_url("http://127.0.0.1:8080/login").is_ok());
        assert!(check_url("https://example.test/").is_ok());
        let e = check_url("127.0.0.1/login").unwrap_err();
        assert!(e.starts_with("bad URL \"127.0.0.1/login\""), "{e}");
        assert!(check_url("file:///etc/passwd")
            .unwrap_err()
            .contains("`file`"));
        assert!(check_url("http://").is_err());
    }

    #[test]
    fn allow_patterns_filter_errors_and_bad_patterns_are_named() {
        let allow = Allow::new(&["favicon".into(), "^Warning".into()]).unwrap();
        let lines = vec![
            "GET http://x/favicon.ico: 404".to_string(),
            "Uncaught TypeError: x is undefined".to_string(),
        ];
        assert_eq!(allow.unallowed(&lines), vec![&lines[1]]);
        let e = Allow::new(&["(".into()]).unwrap_err();
        assert!(e.contains("\"(\""), "{e}");
    }

    #[test]
    fn screenshot_names_are_numbered_slugs_without_query_or_user() {
        assert_eq!(
            screenshot_name(1, "http://127.0.0.1:8080/login"),
            "01-127-0-0-1-8080-login.png"
        );
        assert_eq!(
            screenshot_name(12, "https://***@example.test/a/b?token=***#x"),
            "12-example-test-a-b.png"
        );
        assert_eq!(screenshot_name(3, "http://***/"), "03-page.png");
        let long = format!("http://h/{}", "a".repeat(200));
        assert!(screenshot_name(4, &long).len() <= 3 + 60 + 4);
    }

    fn good() -> Visit {
        Visit {
            status: Some(200),
            load_ms: Some(120),
            title: "Login".into(),
            timeout: Duration::from_secs(5),
            ..Visit::default()
        }
    }

    #[test]
    fn a_good_page_passes() {
        assert!(problems(&good(), &Expect::default()).is_empty());
        let redirect = Visit {
            status: Some(302),
            ..good()
        };
        assert!(problems(&redirect, &Expect::default()).is_empty());
    }

    #[test]
    fn each_failure_is_named() {
        let e = Expect {
            allow: Allow::new(&["favicon".into()]).unwrap(),
            wait_for: Some("#form".into()),
            expect_text: Some("Sign in".into()),
            max_load_ms: Some(100),
        };
        let v = Visit {
            status: Some(500),
            console_errors: vec!["Uncaught Error: boom".into()],
            failed_requests: vec![
                "GET http://h/app.js: 404".into(),
                "GET http://h/favicon.ico: 404".into(),
            ],
            wait_for_found: Some(false),
            text: Some("Welcome".into()),
            ..good()
        };
        let p = problems(&v, &e);
        assert_eq!(
            p,
            vec![
                "status 500, expected 2xx or 3xx".to_string(),
                "loaded in 120 ms, over max_load_ms 100".into(),
                "1 console error(s): \"Uncaught Error: boom\"".into(),
                "1 failed request(s): \"GET http://h/app.js: 404\"".into(),
                "`#form` did not appear within 5s".into(),
                "the page does not show the text \"Sign in\"".into(),
            ]
        );
        let msg = check_message("http://h/", &p[..1], Some("/r/screenshots/01-h.png"));
        assert_eq!(
            msg,
            "browser check of http://h/ failed: status 500, expected 2xx or 3xx\nscreenshot: /r/screenshots/01-h.png"
        );
    }

    #[test]
    fn an_unreachable_or_unfinished_page_says_so() {
        let v = Visit {
            status: None,
            load_ms: None,
            load_error: Some("net::ERR_CONNECTION_REFUSED".into()),
            ..good()
        };
        assert_eq!(
            problems(&v, &Expect::default()),
            vec!["the page could not be loaded: net::ERR_CONNECTION_REFUSED".to_string()]
        );
        let v = Visit {
            load_ms: None,
            ..good()
        };
        assert_eq!(
            problems(&v, &Expect::default()),
            vec!["the page did not fire its load event within 5s".to_string()]
        );
    }
}
