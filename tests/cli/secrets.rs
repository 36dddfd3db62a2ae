//! Secrets: masked in every rendered form (shell-quoted, JSON-escaped, debug, URL-encoded,
//! base64, line by line) and in every sink (terminal, run.log, summary.md, report.json,
//! history, `--json`, the REPL, hooks), through the real binary. Each test greps all the
//! output and the whole record folder for the clear value and every encoding of it,
//! computed here independently of deployer's masker.

use std::path::Path;

use crate::support::server::TestServer;
use crate::support::{Output, Test};

/// A test base64 encoder (standard alphabet, no padding).
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bits: Vec<bool> = bytes
        .iter()
        .flat_map(|b| (0..8).rev().map(move |i| b >> i & 1 == 1))
        .collect();
    bits.chunks(6)
        .map(|c| {
            let v = (0..6).fold(0, |v, i| v << 1 | usize::from(c.get(i) == Some(&true)));
            ALPHABET[v] as char
        })
        .collect()
}

/// Percent-encodes every byte but ASCII letters and digits (either case), or, with
/// `space`, only the spaces (as `%20`, or as `+` in form encoding).
fn percent(s: &str, upper: bool) -> String {
    s.bytes()
        .map(|b| match b {
            b if b.is_ascii_alphanumeric() => (b as char).to_string(),
            b if upper => format!("%{b:02X}"),
            b => format!("%{b:02x}"),
        })
        .collect()
}

/// Every form of `secret` that must never be shown: the value, each line of 6 characters
/// or more, and their shell-quoted, JSON, debug, twice-escaped, URL-encoded forms, and
/// the base64 characters that depend on the secret alone at the three byte alignments.
fn forms(secret: &str) -> Vec<String> {
    let unquote = |s: String| s[1..s.len() - 1].to_string();
    let mut texts = vec![secret.to_string()];
    texts.extend(
        secret
            .lines()
            .filter(|l| l.chars().count() >= 6)
            .map(str::to_string),
    );
    let mut out = Vec::new();
    for t in &texts {
        let json = unquote(serde_json::to_string(t).unwrap());
        let debug = unquote(format!("{t:?}"));
        out.extend([
            t.clone(),
            t.replace('\'', r"'\''"),
            json.clone(),
            debug.clone(),
            unquote(serde_json::to_string(&json).unwrap()),
            unquote(serde_json::to_string(&debug).unwrap()),
            percent(t, true),
            percent(t, false),
            t.replace(' ', "%20"),
            t.replace(' ', "+"),
        ]);
    }
    for prefix in ["", "u", "us"] {
        let data = format!("{prefix}{secret}");
        let encoded = base64(data.as_bytes());
        let (p, n) = (prefix.len(), secret.len());
        let core = &encoded[(8 * p).div_ceil(6)..8 * (p + n) / 6];
        out.push(core.to_string());
        out.push(core.replace('+', "-").replace('/', "_"));
    }
    out.sort();
    out.dedup();
    out
}

/// Every file under `dir`, recursively, with its text.
fn files_under(dir: &Path) -> Vec<(String, String)> {
    crate::support::walk(dir)
        .into_iter()
        .filter(|path| !path.is_dir())
        .map(|path| {
            let bytes = std::fs::read(&path).unwrap_or_default();
            let text = String::from_utf8_lossy(&bytes).into_owned();
            (path.display().to_string(), text)
        })
        .collect()
}

/// Panics if stdout, stderr or any file of the run's record folder holds a form of
/// `secret`; returns how many record files were checked.
#[track_caller]
fn assert_hidden(out: &Output, secret: &str) -> usize {
    let records = files_under(&out.path().join(".deployer"));
    let mut places = vec![
        ("stdout".to_string(), out.stdout.clone()),
        ("stderr".to_string(), out.stderr.clone()),
    ];
    places.extend(records.iter().cloned());
    for (place, text) in &places {
        for form in forms(secret) {
            assert!(
                !text.contains(&form),
                "{place} holds the secret as {form:?}:\n{text}\n--- stderr ---\n{}",
                out.stderr
            );
        }
    }
    records.len()
}

fn read(out: &Output, name: &str) -> String {
    files_under(&out.path().join(".deployer/runs"))
        .into_iter()
        .find(|(p, _)| p.ends_with(name))
        .map(|(_, text)| text)
        .unwrap_or_else(|| panic!("no {name} in the record"))
}

#[test]
fn forms_cover_the_encodings() {
    // The checker itself: it must know the forms it claims to look for.
    let f = forms("it's a-secret\nsecond line");
    for expected in [
        r"it'\''s a-secret",
        "it%27s%20a%2Dsecret",
        "it's+a-secret",
        r"it's a-secret\nsecond line",
        "second line",
    ] {
        assert!(f.iter().any(|x| x == expected), "{expected} missing");
    }
    assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    assert_eq!(base64(b"fooba"), "Zm9vYmE");
}

#[test]
fn shell_quoted_secret_is_masked_in_echo_error_timeout_and_run_log() {
    let secret = "it's-a-secret";
    let out = Test::new()
        .env("TOK", secret)
        .script(r#"exec(["false", secret("TOK")]);"#)
        .args(["run", "deploy.rhai"])
        .run();
    out.assert_code(1)
        .assert_stderr_contains("$ false '***'")
        .assert_stderr_contains("false '***'");
    assert!(read(&out, "run.log").contains("false '***'"));
    assert!(assert_hidden(&out, secret) >= 4);

    let out = Test::new()
        .env("TOK", secret)
        .script(
            r#"let t = secret("TOK");
               sh(`printf '%s' "${t}" >/dev/null; exit 3`);"#,
        )
        .args(["run", "deploy.rhai"])
        .run();
    out.assert_code(1)
        .assert_stderr_contains(r#"$ printf '%s' "***" >/dev/null; exit 3"#);
    assert_hidden(&out, secret);

    let out = Test::new()
        .env("TOK", secret)
        .script(r#"exec(["sh", "-c", "sleep 5", secret("TOK")], #{ timeout: "300ms" });"#)
        .args(["run", "deploy.rhai"])
        .run();
    out.assert_code(1)
        .assert_stderr_contains("timed out after 300ms: sh -c 'sleep 5' '***'");
    assert_hidden(&out, secret);

    let out = Test::new()
        .env("TOK", secret)
        .script(r#"exec(["false", secret("TOK")]); spawn(["sleep", "5", secret("TOK")]);"#)
        .args(["run", "deploy.rhai", "--dry-run"])
        .run();
    out.assert_code(0)
        .assert_stderr_contains("would run: false '***'")
        .assert_stderr_contains("'***'");
    assert_hidden(&out, secret);
}

#[test]
fn escaped_secret_is_masked_in_json_report_print_debug_and_throw() {
    let secret = "q\"uo\\te\tab\u{1}ctl\nsecond-line";
    let out = Test::new()
        .env("ESC", secret)
        .script(
            r#"let s = secret("ESC");
               print(#{ t: s });
               debug(s);
               log::info("value: " + s);
               throw #{ v: s };"#,
        )
        .args(["run", "deploy.rhai", "--json", "-v"])
        .run();
    // With --json, print() goes to stderr: stdout is the report alone.
    out.assert_code(1)
        .assert_stderr_contains(r#"#{"t": "***"}"#)
        .assert_stderr_contains(r#"debug: deploy.rhai:3: "***""#)
        .assert_stderr_contains("value: ***");
    assert!(assert_hidden(&out, secret) >= 4);
    // --json and report.json stay valid JSON, with the error masked.
    let printed: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let recorded: serde_json::Value = serde_json::from_str(&read(&out, "report.json")).unwrap();
    for report in [&printed, &recorded] {
        let message = report["error"]["message"].as_str().unwrap();
        assert!(message.contains("***"), "{message}");
    }

    // The REPL: values, maps and :scope.
    let out = Test::new()
        .env("ESC", secret)
        .args(["repl"])
        .stdin("let s = secret(\"ESC\");\ns\n#{ v: s }\n:scope\ndebug(s);\nthrow #{ v: s };\n")
        .run();
    out.assert_stdout_contains("let s = \"***\"")
        .assert_stdout_contains("\"***\"");
    assert_hidden(&out, secret);
}

#[test]
fn multi_line_secret_is_masked_in_diagnostics_and_verbose_output() {
    let secret = "first-line-of-it\n  second-line-of-it\nab";
    let out = Test::new()
        .env("ML", secret)
        .script(
            r#"let t = secret("ML");
               exec(["sh", "-c", "printf '%s\n' \"$0\"; printf '%s\n' \"$0\" >&2", t]);
               throw "bad value: " + t;"#,
        )
        .args(["run", "deploy.rhai", "-v"])
        .run();
    out.assert_code(1)
        .assert_stderr_contains("  | ***")
        .assert_stderr_contains("  ! ***")
        .assert_stderr_contains("bad value: ***");
    assert!(assert_hidden(&out, secret) >= 4);

    // In colour, styles wrap the first line of the message: each line is still hidden.
    let out = Test::new()
        .env("ML", secret)
        .script(r#"throw "bad value: " + secret("ML");"#)
        .args(["run", "deploy.rhai", "--color", "always"])
        .run();
    out.assert_code(1)
        .assert_stderr_contains("\x1b[")
        .assert_stderr_contains("bad value: ***");
    assert_hidden(&out, secret);
}

#[test]
fn url_encoded_secret_is_masked_in_query_strings() {
    let server = TestServer::start();
    let secret = "pass word/with&more";
    let script = format!(
        r#"let t = secret("TOK");
           let r = http::get("{echo}?token=" + t);
           print(r.json.path);
           let form = t;
           form.replace(" ", "+");
           print("form: " + form);
           http::get("{reset}?token=" + t);"#,
        echo = server.url("/echo"),
        reset = server.url("/reset"),
    );
    let out = Test::new()
        .env("TOK", secret)
        .script(&script)
        .args(["run", "deploy.rhai"])
        .run();
    out.assert_code(1)
        .assert_stdout_contains("/echo?token=***")
        .assert_stdout_contains("form: ***")
        .assert_stderr_contains("token=***");
    // The request did carry the secret: masking is of output only.
    assert!(server
        .requests()
        .iter()
        .any(|r| r.path.contains("token=pass%20word")));
    assert_hidden(&out, secret);
}

#[test]
fn base64_of_a_secret_is_masked_at_every_alignment() {
    let secret = "b64-s3cret:value?>";
    let out = Test::new()
        .env("TOK", secret)
        .script(
            r#"let t = secret("TOK");
               for prefix in ["", "u", "us", "user:"] {
                   let r = exec(["sh", "-c", "printf '%s%s' \"$1\" \"$0\" | base64 -w0", t, prefix]);
                   print("Authorization: Basic " + r.stdout);
                   let url_safe = r.stdout;
                   url_safe.replace("+", "-");
                   url_safe.replace("/", "_");
                   print("url-safe: " + url_safe);
               }"#,
        )
        .args(["run", "deploy.rhai", "-v"])
        .run();
    out.assert_code(0);
    assert_eq!(out.stdout.matches("***").count(), 8, "{}", out.stdout);
    assert!(assert_hidden(&out, secret) >= 4);
}

#[test]
fn on_finish_hook_receives_the_masked_report() {
    let server = TestServer::start();
    let secret = "hook-\"secret\"\tvalue";
    let script = format!(
        r#"fn on_finish(report) {{
               http::post("{hook}", #{{ json: report }});
           }}
           let t = secret("TOK");
           phase("Deploy", #{{ required: true }}, || {{
               throw "failed with " + t;
           }});"#,
        hook = server.url("/hook"),
    );
    let out = Test::new()
        .env("TOK", secret)
        .script(&script)
        .args(["run", "deploy.rhai"])
        .run();
    out.assert_code(1);
    let posted: Vec<String> = server
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path == "/hook")
        .map(|r| r.body)
        .collect();
    assert_eq!(posted.len(), 1, "the hook posted {posted:?}");
    assert!(posted[0].contains("failed with ***"), "{}", posted[0]);
    for form in forms(secret) {
        assert!(
            !posted[0].contains(&form),
            "hook sent {form:?}: {}",
            posted[0]
        );
    }
    assert_hidden(&out, secret);
}

#[test]
fn short_secret_is_refused_naming_the_variable_not_the_value() {
    let out = Test::new()
        .env("SHORT_TOK", "q7z!x")
        .script(r#"let t = secret("SHORT_TOK"); print("not reached");"#)
        .args(["run", "deploy.rhai"])
        .run();
    out.assert_code(1)
        .assert_stderr_contains("secret SHORT_TOK is shorter than 6 characters")
        .assert_stdout_not_contains("not reached");
    let report = read(&out, "report.json");
    assert!(report.contains("SHORT_TOK"), "{report}");
    for (place, text) in files_under(&out.path().join(".deployer"))
        .into_iter()
        .chain([("stderr".to_string(), out.stderr.clone())])
    {
        assert!(!text.contains("q7z!x"), "{place} shows the short value");
    }
}
