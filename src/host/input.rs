//! Reading script files with bounds: a size cap, regular files only, a UTF-8 byte-order mark
//! accepted, and a cap on variable declarations (Rhai's parser looks each new `let` up in
//! every variable declared before it, so its cost grows with the square of their number).

use std::io::Read;
use std::path::Path;

/// The largest script or module deployer reads: 4 MiB.
pub const MAX_SCRIPT_BYTES: u64 = 4 * 1024 * 1024;

/// The most `let`/`const` declarations one script or module may hold.
pub const MAX_DECLARATIONS: usize = 5_000;

/// The UTF-8 byte-order mark some editors put at the start of a file.
const BOM: &str = "\u{feff}";

/// Reads the script at `path`: a regular file of at most [`MAX_SCRIPT_BYTES`], valid UTF-8
/// (a leading byte-order mark is dropped). The error says what is wrong and what to do;
/// callers put it after `cannot read <path>: `.
pub fn read_script(path: &Path) -> Result<String, String> {
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if !meta.is_file() {
        let what = if meta.is_dir() {
            "a folder"
        } else {
            "not a regular file (a device, pipe or socket)"
        };
        return Err(format!(
            "it is {what}; give the path of a .rhai script file"
        ));
    }
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut bytes = Vec::new();
    file.take(MAX_SCRIPT_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > MAX_SCRIPT_BYTES {
        return Err(format!(
            "it is larger than {} MiB, the limit for a script; keep data in files the script reads, or split it into modules with `import`",
            MAX_SCRIPT_BYTES / (1024 * 1024)
        ));
    }
    let text = String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let valid = &e.as_bytes()[..at];
        let line = valid.iter().filter(|b| **b == b'\n').count() + 1;
        format!("it is not UTF-8 text (invalid byte at line {line}, byte {at}); save it as UTF-8")
    })?;
    Ok(strip_bom(text))
}

/// Drops a leading UTF-8 byte-order mark.
pub fn strip_bom(text: String) -> String {
    match text.strip_prefix(BOM) {
        Some(rest) => rest.to_string(),
        None => text,
    }
}

/// Counts `let` and `const` words outside comments, strings and character literals; also
/// returns the line and column (1-based) of the first one past `limit`, if any.
pub fn count_declarations(text: &str, limit: usize) -> (usize, Option<(usize, usize)>) {
    let b = text.as_bytes();
    let (mut i, mut line, mut line_start) = (0usize, 1usize, 0usize);
    let mut count = 0usize;
    let mut over = None;
    let mut depth_comment = 0usize;
    while i < b.len() {
        let c = b[i];
        if c == b'\n' {
            line += 1;
            line_start = i + 1;
            i += 1;
            continue;
        }
        if depth_comment > 0 {
            if b[i..].starts_with(b"*/") {
                depth_comment -= 1;
                i += 2;
            } else if b[i..].starts_with(b"/*") {
                depth_comment += 1;
                i += 2;
            } else {
                i += 1;
            }
            continue;
        }
        match c {
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                depth_comment = 1;
                i += 2;
            }
            b'"' | b'`' | b'\'' => {
                // Skip the literal; escapes skip the next byte. Interpolations in back-tick
                // strings are skipped with it: a declaration cannot stand in an expression.
                i += 1;
                while i < b.len() && b[i] != c {
                    if b[i] == b'\\' {
                        i += 1;
                    } else if b[i] == b'\n' {
                        line += 1;
                        line_start = i + 1;
                    }
                    i += 1;
                }
                i += 1;
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
                let word = &b[start..i];
                if word == b"let" || word == b"const" {
                    count += 1;
                    if count > limit && over.is_none() {
                        let col = text[line_start..start].chars().count() + 1;
                        over = Some((line, col));
                    }
                }
            }
            _ => i += 1,
        }
    }
    (count, over)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_declarations_outside_comments_and_strings() {
        let text = "let a = 1;\n// let b\n/* let c /* let d */ */ const e = \"let f\";\nlet g = `let ${h}`; letter = 'l';\n";
        assert_eq!(count_declarations(text, 10), (3, None));
        assert_eq!(count_declarations(text, 2), (3, Some((4, 1))));
    }

    #[test]
    fn drops_a_byte_order_mark_only_at_the_start() {
        assert_eq!(strip_bom("\u{feff}print(1);".into()), "print(1);");
        assert_eq!(
            strip_bom("print(\"\u{feff}\");".into()),
            "print(\"\u{feff}\");"
        );
    }

    #[test]
    fn refuses_devices_folders_and_oversized_files() {
        let err = read_script(Path::new("/dev/zero")).expect_err("a device");
        assert!(err.contains("not a regular file"), "{err}");
        let err = read_script(Path::new("/")).expect_err("a folder");
        assert!(err.contains("a folder"), "{err}");
        let big = std::env::temp_dir().join(format!("deployer-input-{}.rhai", std::process::id()));
        std::fs::write(&big, vec![b' '; MAX_SCRIPT_BYTES as usize + 1]).expect("write");
        let err = read_script(&big).expect_err("too big");
        assert!(err.contains("larger than 4 MiB"), "{err}");
        std::fs::write(&big, b"\xef\xbb\xbfprint(1);").expect("write");
        assert_eq!(read_script(&big).expect("bom"), "print(1);");
        std::fs::remove_file(&big).expect("cleanup");
    }
}
