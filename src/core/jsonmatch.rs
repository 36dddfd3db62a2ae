//! Matching a JSON document against an expected subset: `#{ status: "healthy" }` holds for
//! `{"status":"healthy","version":"1.2"}`.

use serde_json::Value;

/// Returns `None` when every key of `expected` is in `actual` with an equal value
/// (recursively for objects), or a description of the first difference.
pub fn subset_mismatch(expected: &Value, actual: &Value, path: &str) -> Option<String> {
    match (expected, actual) {
        (Value::Object(want), Value::Object(have)) => {
            for (k, w) in want {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match have.get(k) {
                    None => return Some(format!("json has no `{p}` (expected {w})")),
                    Some(h) => {
                        if let Some(m) = subset_mismatch(w, h, &p) {
                            return Some(m);
                        }
                    }
                }
            }
            None
        }
        (Value::Number(a), Value::Number(b)) if a.as_f64() == b.as_f64() => None,
        (w, h) if w == h => None,
        (w, h) => {
            let at = if path.is_empty() { "json" } else { path };
            Some(format!("{at} is {h}, expected {w}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn subsets_match() {
        let have = json!({"status": "healthy", "db": {"ok": true, "ms": 3}, "n": 1.0});
        assert_eq!(
            subset_mismatch(&json!({"status": "healthy"}), &have, ""),
            None
        );
        assert_eq!(
            subset_mismatch(&json!({"db": {"ok": true}}), &have, ""),
            None
        );
        assert_eq!(subset_mismatch(&json!({"n": 1}), &have, ""), None);
    }

    #[test]
    fn differences_are_described() {
        let have = json!({"status": "starting", "db": {"ok": false}});
        assert_eq!(
            subset_mismatch(&json!({"status": "healthy"}), &have, ""),
            Some("status is \"starting\", expected \"healthy\"".into())
        );
        assert_eq!(
            subset_mismatch(&json!({"db": {"ok": true}}), &have, ""),
            Some("db.ok is false, expected true".into())
        );
        assert_eq!(
            subset_mismatch(&json!({"version": "2"}), &have, ""),
            Some("json has no `version` (expected \"2\")".into())
        );
    }
}
