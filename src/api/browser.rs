//! `browser::visit` and `browser::check`: pages loaded in the run's headless Chromium
//! (`sys::browser`), judged by `core::browser`, with their screenshots in the run's record.

use rhai::plugin::*;
use rhai::{Array, Map};

use super::error::{at_call as at, state, terminated, throw, throw_with, Error};
use super::opts::Opts;
use crate::core::browser::{self as logic, Allow, Expect, Visit};
use crate::host::state::HostState;
use crate::sys::browser::{Shot, VisitError, VisitSpec};

pub(crate) use crate::core::browser::{CHECK_OPTS, VISIT_OPTS};

/// What a call asked for: the visit, and what a check expects of it.
struct Asked {
    spec: VisitSpec,
    expect: Expect,
}

fn parse(st: &HostState, url: &str, opts: &Opts, func: &str) -> Result<Asked, Error> {
    logic::check_url(url).map_err(|e| throw("usage", format!("{func}(): {e}")))?;
    let viewport = match opts.string("viewport")? {
        Some(v) => {
            logic::parse_viewport(&v).map_err(|e| throw("usage", format!("{func}(): {e}")))?
        }
        None => logic::DEFAULT_VIEWPORT,
    };
    let allow: Vec<String> = opts
        .array("allow_errors")?
        .unwrap_or_default()
        .iter()
        .map(|v| {
            if v.is_string() {
                Ok(v.to_string())
            } else {
                Err(throw(
                    "usage",
                    format!("{func}(): `allow_errors` must be a list of regular expressions (strings), got {v}"),
                ))
            }
        })
        .collect::<Result<_, _>>()?;
    let allow = Allow::new(&allow).map_err(|e| throw("usage", format!("{func}(): {e}")))?;
    let max_load_ms = match opts.int("max_load_ms")? {
        Some(n) if n < 0 => {
            return Err(throw(
                "usage",
                format!("{func}(): `max_load_ms` must be 0 or more, got {n}"),
            ))
        }
        n => n.map(|n| n as u64),
    };
    let wait_for = opts.string("wait_for")?.filter(|s| !s.trim().is_empty());
    let expect_text = opts.string("expect_text")?;
    let screenshot = if opts.boolean("screenshot")?.unwrap_or(true) {
        let name = logic::screenshot_name(st.browser.next_number(), &st.console.mask(url));
        Some(st.browser.dir().join(name))
    } else {
        None
    };
    Ok(Asked {
        spec: VisitSpec {
            url: url.to_string(),
            timeout: opts.duration("timeout")?.unwrap_or(logic::DEFAULT_TIMEOUT),
            wait_for: wait_for.clone(),
            viewport,
            screenshot,
            headers: opts.string_pairs("headers")?,
            cookies: opts.string_pairs("cookies")?,
            block_mutations: st.dry_run(),
            read_text: expect_text.is_some(),
        },
        expect: Expect {
            allow,
            wait_for,
            expect_text,
            max_load_ms,
        },
    })
}

fn strings(v: &[String]) -> Dynamic {
    v.iter()
        .cloned()
        .map(Dynamic::from)
        .collect::<Array>()
        .into()
}

fn visit_map(url: &str, asked: &Asked, v: &Visit, problems: &[String]) -> Map {
    let mut m = Map::new();
    m.insert("url".into(), url.into());
    m.insert(
        "status".into(),
        v.status
            .map(|s| Dynamic::from(s as i64))
            .unwrap_or(Dynamic::UNIT),
    );
    m.insert("ok".into(), problems.is_empty().into());
    m.insert(
        "load_ms".into(),
        v.load_ms
            .map(|s| Dynamic::from(s as i64))
            .unwrap_or(Dynamic::UNIT),
    );
    m.insert("title".into(), v.title.clone().into());
    m.insert("console_errors".into(), strings(&v.console_errors));
    m.insert("failed_requests".into(), strings(&v.failed_requests));
    m.insert("blocked_requests".into(), strings(&v.blocked_requests));
    m.insert("problems".into(), strings(problems));
    m.insert("viewport".into(), asked.spec.viewport.to_string().into());
    m.insert(
        "screenshot".into(),
        asked
            .spec
            .screenshot
            .as_ref()
            .map(|p| Dynamic::from(p.display().to_string()))
            .unwrap_or(Dynamic::UNIT),
    );
    if let Some(e) = &v.load_error {
        m.insert("load_error".into(), e.clone().into());
    }
    m
}

fn run(ctx: &NativeCallContext, url: &str, opts: Opts, gate: bool) -> Result<Map, Error> {
    let st = state(ctx)?;
    let func = if gate {
        "browser::check"
    } else {
        "browser::visit"
    };
    let asked = parse(&st, url, &opts, func)?;
    st.read_only(&format!(
        "browser visit {url} (the page's non-GET requests are blocked)"
    ));
    let console = st.console.clone();
    let note = move |s: &str| console.info(s);
    let visit = st
        .block_on(st.browser.visit(&asked.spec, &note))
        .map_err(|_| terminated(&st))?
        .map_err(|e| match e {
            VisitError::Usage(m) => throw("usage", format!("{func}(): {m}")),
            VisitError::Browser(m) => throw("browser", format!("{func}({url}): {m}")),
            VisitError::Protocol(m) => throw("browser", format!("{func}({url}): {m}")),
        })?;
    for b in &visit.blocked_requests {
        st.would(&format!(
            "send {b} (the page's request; blocked in the dry run)"
        ));
    }
    // A plain visit judges only what every page must do (load, 2xx/3xx, no errors).
    let problems = if gate {
        logic::problems(&visit, &asked.expect)
    } else {
        logic::problems(
            &visit,
            &Expect {
                allow: asked.expect.allow.clone(),
                ..Expect::default()
            },
        )
    };
    if let Some(file) = &asked.spec.screenshot {
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        st.browser.add_shot(Shot {
            file: file.clone(),
            path: format!("screenshots/{name}"),
            url: st.console.mask(url),
            viewport: asked.spec.viewport.to_string(),
            ok: gate.then_some(problems.is_empty()),
        });
    }
    let map = visit_map(url, &asked, &visit, &problems);
    if gate && !problems.is_empty() {
        let shot = asked
            .spec
            .screenshot
            .as_ref()
            .map(|p| p.display().to_string());
        return Err(throw_with(
            "browser_check",
            logic::check_message(url, &problems, shot.as_deref()),
            map,
        ));
    }
    Ok(map)
}

#[export_module]
pub mod browser_api {
    use super::*;

    /// True when the system's Chromium is installed (`chromium` on PATH, or
    /// `DEPLOYER_CHROMIUM`): a script can skip its browser checks on a machine without one.
    ///
    /// ```rhai
    /// if browser::available() { check("Home page", || browser::check(url)); }
    /// ```
    pub fn available() -> bool {
        crate::sys::browser::find().is_ok()
    }

    /// Loads a page in the run's headless Chromium (the system's `chromium`, started on the
    /// first visit and reused) and returns `#{ url, status, ok, load_ms, title,
    /// console_errors, failed_requests, blocked_requests, problems, viewport, screenshot }`:
    /// `load_ms` is the time to the page's load event, `console_errors` holds
    /// `console.error` calls, uncaught exceptions and unhandled promise rejections,
    /// `screenshot` the PNG's path in the run's record folder. In a dry run the page's
    /// non-GET requests are blocked and listed in `blocked_requests`.
    ///
    /// ```rhai
    /// let page = browser::visit("http://127.0.0.1:8080/login");
    /// log::info(`${page.title}: ${page.load_ms} ms`);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn visit(ctx: NativeCallContext, url: &str) -> Result<Map, Error> {
        super::run(&ctx, url, Opts::none("browser::visit"), false).map_err(|e| at(&ctx, e))
    }

    /// Loads a page with options: `timeout` (default 30 s, for the load and `wait_for`),
    /// `wait_for` (a CSS selector that must appear), `viewport` (`"1280x800"`, the
    /// default, or `"390x844"` for a phone), `screenshot` (default true), `headers` and
    /// `cookies` (maps), `allow_errors` (regular expressions of console errors and failed
    /// requests to ignore).
    ///
    /// ```rhai
    /// let page = browser::visit(url + "/book", #{ viewport: "390x844", wait_for: "form#appointment" });
    /// if page.console_errors.len() > 0 { log::warn(page.console_errors[0]); }
    /// ```
    #[rhai_fn(name = "visit", return_raw)]
    pub fn visit_with(ctx: NativeCallContext, url: &str, options: Map) -> Result<Map, Error> {
        Opts::new("browser::visit", options, VISIT_OPTS)
            .and_then(|o| super::run(&ctx, url, o, false))
            .map_err(|e| at(&ctx, e))
    }

    /// The gate form of `browser::visit`: throws an error of kind `browser_check` (with the
    /// page, what failed and the screenshot's path) when the status is not 2xx/3xx, the page
    /// does not load, or a console error or failed request appears; returns the visit
    /// otherwise. Works inside `check(...)` and `retry(...)`.
    ///
    /// ```rhai
    /// check("Login page works", || browser::check("http://127.0.0.1:8080/login"));
    /// ```
    #[rhai_fn(return_raw)]
    pub fn check(ctx: NativeCallContext, url: &str) -> Result<Map, Error> {
        super::run(&ctx, url, Opts::none("browser::check"), true).map_err(|e| at(&ctx, e))
    }

    /// `browser::check` with the options of `browser::visit` and: `expect_text` (text the
    /// page must show), `max_load_ms` (the most milliseconds to the load event). A
    /// `wait_for` selector that does not appear in time fails the check.
    ///
    /// ```rhai
    /// check("Booking form", || browser::check(url + "/book", #{
    ///     wait_for: "form#appointment", expect_text: "Book", max_load_ms: 3000,
    ///     allow_errors: ["favicon"] }));
    /// ```
    #[rhai_fn(name = "check", return_raw)]
    pub fn check_with(ctx: NativeCallContext, url: &str, options: Map) -> Result<Map, Error> {
        Opts::new("browser::check", options, CHECK_OPTS)
            .and_then(|o| super::run(&ctx, url, o, true))
            .map_err(|e| at(&ctx, e))
    }
}
