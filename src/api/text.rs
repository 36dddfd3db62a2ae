//! Small text helpers that scripts and the stdlib used to write again and again in Rhai:
//! `join`, `list`, `lines`, `trimmed`, `error_message`, `parse_postgres_url`. The logic is
//! plain Rust below the bindings, unit-tested.

use rhai::plugin::*;
use rhai::{Array, Map};

use super::error::{throw, Error};

/// Splits a comma-separated setting into its trimmed, non-empty items.
pub fn split_list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

/// Splits text into its trimmed, non-empty lines.
pub fn split_lines(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

/// The message of whatever a script caught: the `message` of an error map, the text of
/// a thrown string, else the value as text.
pub fn message_of(e: &Dynamic) -> String {
    if let Some(m) = e.read_lock::<Map>() {
        if let Some(msg) = m.get("message") {
            return msg.to_string();
        }
    }
    e.to_string()
}

/// Decodes `%XX` escapes; a `%` not followed by two hex digits stays as it is.
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = |c: u8| (c as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The parts of `postgres://user:password@host:port/database?sslmode=MODE`; absent parts
/// are `None`.
#[derive(Debug, Default, PartialEq)]
pub struct PgUrl {
    pub user: Option<String>,
    pub password: Option<String>,
    pub host: Option<String>,
    pub port: Option<String>,
    pub database: Option<String>,
    pub sslmode: Option<String>,
}

/// Parses a PostgreSQL connection URL (`postgres://` or `postgresql://`). The error names
/// the start of the URL only, never a password that may follow.
pub fn parse_pg_url(url: &str) -> Result<PgUrl, String> {
    let Some(rest) = url
        .strip_prefix("postgresql://")
        .or_else(|| url.strip_prefix("postgres://"))
    else {
        let start: String = url.chars().take(12).collect();
        return Err(format!(
            "the connection URL must start with postgres:// or postgresql://, got \"{start}...\""
        ));
    };
    let mut c = PgUrl::default();
    let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
    for pair in query.split('&') {
        if let Some(("sslmode", v)) = pair.split_once('=') {
            c.sslmode = Some(percent_decode(v));
        }
    }
    let (rest, db) = rest.split_once('/').unwrap_or((rest, ""));
    if !db.is_empty() {
        c.database = Some(percent_decode(db));
    }
    // The last `@` ends the user part: a password may hold an unescaped `@`.
    let rest = match rest.rsplit_once('@') {
        Some((userinfo, hostport)) => {
            let (user, password) = match userinfo.split_once(':') {
                Some((u, p)) => (u, Some(p)),
                None => (userinfo, None),
            };
            c.password = password.map(percent_decode);
            if !user.is_empty() {
                c.user = Some(percent_decode(user));
            }
            hostport
        }
        None => rest,
    };
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) if !rest.ends_with(']') => (h, Some(p)),
        _ => (rest, None),
    };
    if let Some(p) = port {
        if p.parse::<u16>().is_err() {
            return Err(format!(
                "the port of the connection URL must be a number from 1 to 65535, got \"{p}\""
            ));
        }
        c.port = Some(p.to_string());
    }
    if !host.is_empty() {
        c.host = Some(percent_decode(host));
    }
    Ok(c)
}

#[export_module]
pub mod text_api {
    use super::*;

    /// Joins the items of an array with `sep`, each item as text.
    ///
    /// ```rhai
    /// let line = join(["web1", "web2"], ", ");   // "web1, web2"
    /// let same = ["a", 1].join("-");              // "a-1"
    /// ```
    pub fn join(items: Array, sep: &str) -> String {
        items
            .iter()
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
            .join(sep)
    }

    /// Splits a comma-separated setting into its trimmed, non-empty items; an array is
    /// returned as it is (a setting may already be a list).
    ///
    /// ```rhai
    /// let paths = list("/, /login,");   // ["/", "/login"]
    /// ```
    pub fn list(text: Dynamic) -> Array {
        if text.is_array() {
            return text.cast::<Array>();
        }
        split_list(&text.to_string())
            .into_iter()
            .map(Dynamic::from)
            .collect()
    }

    /// Splits text into its trimmed, non-empty lines.
    ///
    /// ```rhai
    /// let tags = lines(exec(["git", "tag"]).stdout);
    /// ```
    pub fn lines(text: &str) -> Array {
        split_lines(text).into_iter().map(Dynamic::from).collect()
    }

    /// Returns the text with the white space at both ends removed (Rhai's `trim` changes
    /// a string in place and returns nothing).
    ///
    /// ```rhai
    /// let v = trimmed("  v1.2.3\n");   // "v1.2.3"
    /// ```
    pub fn trimmed(text: &str) -> String {
        text.trim().to_string()
    }

    /// The message of a caught error, whatever was thrown: an error map's `message`, a
    /// thrown string, or any other value as text.
    ///
    /// ```rhai
    /// try { abort("stop"); } catch (e) { log::warn(error_message(e)); }
    /// ```
    pub fn error_message(e: Dynamic) -> String {
        message_of(&e)
    }

    /// Parses `postgres://user:password@host:port/database?sslmode=MODE` (or
    /// `postgresql://`) into a map holding the parts present: `user`, `password`, `host`,
    /// `port`, `database`, `sslmode`, percent-escapes decoded.
    ///
    /// ```rhai
    /// let c = parse_postgres_url("postgres://app@127.0.0.1:5432/app");
    /// log::info(`database ${c.database} on ${c.host}`);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn parse_postgres_url(url: &str) -> Result<Map, Error> {
        let c = super::parse_pg_url(url).map_err(|e| throw("usage", format!("pg: {e}")))?;
        let mut m = Map::new();
        for (k, v) in [
            ("user", c.user),
            ("password", c.password),
            ("host", c.host),
            ("port", c.port),
            ("database", c.database),
            ("sslmode", c.sslmode),
        ] {
            if let Some(v) = v {
                m.insert(k.into(), v.into());
            }
        }
        Ok(m)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn lists_and_lines_drop_blanks_and_trim() {
        assert_eq!(split_list(" a, b ,,c,"), ["a", "b", "c"]);
        assert!(split_list(" , ").is_empty());
        assert_eq!(split_lines("x\n\n  y \r\n"), ["x", "y"]);
    }

    #[test]
    fn percent_escapes_decode_and_bad_ones_stay() {
        assert_eq!(percent_decode("p%40ss%2Fw"), "p@ss/w");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
    }

    #[test]
    fn postgres_urls_parse_into_their_parts() {
        let c =
            parse_pg_url("postgres://app:p%40ss@db.local:6432/my%20db?sslmode=require").unwrap();
        assert_eq!(
            c,
            PgUrl {
                user: Some("app".into()),
                password: Some("p@ss".into()),
                host: Some("db.local".into()),
                port: Some("6432".into()),
                database: Some("my db".into()),
                sslmode: Some("require".into()),
            }
        );
        assert_eq!(
            parse_pg_url("postgresql:///app").unwrap(),
            PgUrl {
                database: Some("app".into()),
                ..PgUrl::default()
            }
        );
        assert_eq!(
            parse_pg_url("postgres://u@h").unwrap().host.as_deref(),
            Some("h")
        );
    }

    #[test]
    fn bad_postgres_urls_say_why_without_the_password() {
        let e = parse_pg_url("mysql://root:hunter22@x/db").unwrap_err();
        assert!(e.contains("postgres://") && !e.contains("hunter22"), "{e}");
        let e = parse_pg_url("postgres://u@h:abc/db").unwrap_err();
        assert!(e.contains("\"abc\""), "{e}");
    }

    #[test]
    fn error_messages_come_from_maps_strings_and_values() {
        let mut m = Map::new();
        m.insert("kind".into(), "x".into());
        m.insert("message".into(), "boom".into());
        assert_eq!(message_of(&Dynamic::from_map(m)), "boom");
        assert_eq!(message_of(&Dynamic::from("plain")), "plain");
        assert_eq!(message_of(&Dynamic::from(3_i64)), "3");
    }
}
