//! Dotenv files (`KEY=value` lines, as Laravel, Docker Compose and most frameworks read
//! them): comments, `export`, single and double quotes, multi-line quoted values.

/// A line of a dotenv file that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct DotenvError {
    /// The 1-based line number.
    pub line: usize,
    /// What is wrong with it and how to write it instead.
    pub reason: String,
}

/// Parses a dotenv file into its `(key, value)` pairs in file order (a key defined twice
/// appears twice; the last one wins for readers). Values are unquoted and `\n`, `\t`,
/// `\"` and `\\` are unescaped in double quotes; `${VAR}` references are kept as written.
pub fn parse(text: &str) -> Result<Vec<(String, String)>, DotenvError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let number = i + 1;
        let line = lines[i].trim();
        i += 1;
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line
            .strip_prefix("export ")
            .map(str::trim_start)
            .unwrap_or(line);
        let Some((key, rest)) = line.split_once('=') else {
            return Err(DotenvError {
                line: number,
                reason: format!("expected KEY=VALUE, found `{}`", shorten(line)),
            });
        };
        let key = key.trim();
        if !valid_key(key) {
            return Err(DotenvError {
                line: number,
                reason: format!(
                    "`{}` is not a variable name: use letters, digits and `_`, not starting with a digit",
                    shorten(key)
                ),
            });
        }
        let rest = rest.trim_start();
        let value = match rest.chars().next() {
            Some(q @ ('"' | '\'')) => {
                let mut body = rest[1..].to_string();
                loop {
                    if let Some((value, after)) = close_quote(&body, q) {
                        let after = after.trim();
                        if !after.is_empty() && !after.starts_with('#') {
                            return Err(DotenvError {
                                line: number,
                                reason: format!(
                                    "unexpected `{}` after the quoted value of {key}",
                                    shorten(after)
                                ),
                            });
                        }
                        break value;
                    }
                    match lines.get(i) {
                        Some(next) => {
                            body.push('\n');
                            body.push_str(next);
                            i += 1;
                        }
                        None => {
                            return Err(DotenvError {
                                line: number,
                                reason: format!(
                                    "the value of {key} opens a {} quote that is never closed",
                                    if q == '"' { "double" } else { "single" }
                                ),
                            })
                        }
                    }
                }
            }
            _ => unquoted(rest),
        };
        out.push((key.to_string(), value));
    }
    Ok(out)
}

/// Finds the closing quote of a quoted value; returns the value (unescaped for double
/// quotes) and the text after the quote.
fn close_quote(body: &str, quote: char) -> Option<(String, &str)> {
    let mut value = String::new();
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        if c == quote {
            return Some((value, &body[i + c.len_utf8()..]));
        }
        if c == '\\' && quote == '"' {
            match chars.next() {
                Some((_, 'n')) => value.push('\n'),
                Some((_, 't')) => value.push('\t'),
                Some((_, 'r')) => value.push('\r'),
                Some((_, e @ ('"' | '\\' | '$'))) => value.push(e),
                Some((_, other)) => {
                    value.push('\\');
                    value.push(other);
                }
                None => value.push('\\'),
            }
            continue;
        }
        value.push(c);
    }
    None
}

/// An unquoted value ends at a ` #` comment; surrounding spaces are not part of it.
fn unquoted(rest: &str) -> String {
    let mut end = rest.len();
    let bytes = rest.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'#' && i > 0 && bytes[i - 1].is_ascii_whitespace() {
            end = i;
            break;
        }
    }
    rest[..end].trim().to_string()
}

fn valid_key(key: &str) -> bool {
    let mut chars = key.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-')
}

fn shorten(s: &str) -> String {
    if s.chars().count() > 40 {
        format!("{}...", s.chars().take(40).collect::<String>())
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(text: &str) -> Vec<(String, String)> {
        parse(text).expect("valid dotenv")
    }

    fn kv(k: &str, v: &str) -> (String, String) {
        (k.to_string(), v.to_string())
    }

    #[test]
    fn reads_plain_quoted_and_exported_values() {
        let text = "# comment\n\nAPP_NAME=Laravel\nAPP_KEY=\"base64:abc=\"\nexport DB_HOST = 127.0.0.1 # local\nEMPTY=\nSINGLE='a \\n b'\nURL=http://x/#anchor\n";
        assert_eq!(
            pairs(text),
            vec![
                kv("APP_NAME", "Laravel"),
                kv("APP_KEY", "base64:abc="),
                kv("DB_HOST", "127.0.0.1"),
                kv("EMPTY", ""),
                kv("SINGLE", "a \\n b"),
                kv("URL", "http://x/#anchor"),
            ]
        );
    }

    #[test]
    fn unescapes_double_quotes_and_spans_lines() {
        let text = "A=\"line1\\nline2 \\\"q\\\"\"\nKEY=\"-----BEGIN\nbody\n-----END\" # pem\nB=2";
        assert_eq!(
            pairs(text),
            vec![
                kv("A", "line1\nline2 \"q\""),
                kv("KEY", "-----BEGIN\nbody\n-----END"),
                kv("B", "2"),
            ]
        );
    }

    #[test]
    fn reports_bad_lines_with_their_number() {
        let err = parse("A=1\nnot a pair\n").expect_err("no =");
        assert_eq!(err.line, 2);
        assert!(err.reason.contains("expected KEY=VALUE"), "{err}");
        let err = parse("1A=x").expect_err("bad key");
        assert!(err.reason.contains("not a variable name"), "{err}");
        let err = parse("A=\"open\nB=2\n").expect_err("unclosed");
        assert_eq!(err.line, 1);
        assert!(err.reason.contains("never closed"), "{err}");
        let err = parse("A=\"x\" y").expect_err("trailing text");
        assert!(err.reason.contains("unexpected `y`"), "{err}");
    }

    #[test]
    fn ignores_a_byte_order_mark_and_crlf() {
        assert_eq!(
            pairs("\u{feff}A=1\r\nB=two\r\n"),
            vec![kv("A", "1"), kv("B", "two")]
        );
    }
}
