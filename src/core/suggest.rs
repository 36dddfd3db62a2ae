//! "Did you mean ...?" suggestions by edit distance.

/// Returns the edit distance between two strings (by chars), counting a swap of two
/// neighbouring characters as one edit (optimal string alignment), as typos usually are.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let w = b.len() + 1;
    let mut d = vec![0usize; (a.len() + 1) * w];
    for i in 0..=a.len() {
        d[i * w] = i;
    }
    for (j, cell) in d.iter_mut().enumerate().take(w) {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[(i - 1) * w + j] + 1)
                .min(d[i * w + j - 1] + 1)
                .min(d[(i - 1) * w + j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[(i - 2) * w + j - 2] + 1);
            }
            d[i * w + j] = v;
        }
    }
    d[a.len() * w + b.len()]
}

/// Returns the candidate closest to `name`, if it is close enough to be a likely typo.
pub fn nearest<'a, I>(name: &str, candidates: I) -> Option<&'a str>
where
    I: IntoIterator<Item = &'a str>,
{
    let limit = (name.chars().count() / 3).clamp(1, 3);
    let lower = name.to_lowercase();
    candidates
        .into_iter()
        .filter(|c| *c != name)
        .map(|c| {
            let d = edit_distance(&lower, &c.to_lowercase());
            // A shared suffix after a namespace (`get` vs `http::get`) is a strong hint.
            let d = if c.ends_with(&format!("::{name}")) {
                0
            } else {
                d
            };
            // An abbreviation (`prod` for `production`) is a likely slip too.
            let d = if lower.chars().count() >= 3 && c.to_lowercase().starts_with(&lower) {
                d.min(1)
            } else {
                d
            };
            // So are the same letters in another order (`brake` for `break`).
            let d = if lower.chars().count() >= 4 && same_letters(&lower, &c.to_lowercase()) {
                d.min(1)
            } else {
                d
            };
            (d, c)
        })
        .filter(|(d, _)| *d <= limit)
        .min_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.len().cmp(&b.1.len())))
        .map(|(_, c)| c)
}

/// True when `a` and `b` hold the same letters, in any order.
fn same_letters(a: &str, b: &str) -> bool {
    let mut a: Vec<char> = a.chars().collect();
    let mut b: Vec<char> = b.chars().collect();
    a.sort_unstable();
    b.sort_unstable();
    a == b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("exec", "exec"), 0);
        assert_eq!(edit_distance("exce", "exec"), 1);
    }

    #[test]
    fn suggests_close_names_only() {
        let names = ["exec", "sh", "spawn", "sleep", "http::get", "retry"];
        assert_eq!(nearest("exce", names), Some("exec"));
        assert_eq!(nearest("retyr", names), Some("retry"));
        assert_eq!(nearest("brake", ["break", "region"]), Some("break"));
        assert_eq!(nearest("get", names), Some("http::get"));
        assert_eq!(nearest("deploy_everything", names), None);
        assert_eq!(
            nearest("prod", ["production", "staging"]),
            Some("production")
        );
    }
}
