//! The option names of native functions that take an option map (`#{ timeout: "5s" }`):
//! one list per function, shared by the binding that checks them at run time and by the
//! static check (`deployer check`), which checks literal maps before the script runs.

use crate::core::suggest::nearest;

/// The option names of one native function that takes an option map: the list its
/// binding checks at run time, and `deployer check` checks literal maps against before.
#[derive(Debug, Clone, Copy)]
pub struct OptionList {
    /// The name scripts call (`exec`, `http::get`).
    pub func: &'static str,
    /// The number of arguments of the form that takes the map.
    pub argc: usize,
    /// The position of the map among them.
    pub arg: usize,
    /// The options it knows.
    pub known: &'static [&'static str],
    /// Options whose value is itself a map of known keys (`expect` of `http::wait_healthy`).
    pub nested: &'static [(&'static str, &'static [&'static str])],
}

/// The message for an unknown option, shared by the runtime and the static check:
/// `unknown option 'timout'; did you mean 'timeout'?`.
pub fn unknown_option(func: &str, key: &str, known: &[&str]) -> String {
    let hint = nearest(key, known.iter().copied())
        .map(|s| format!("did you mean `{s}`? "))
        .unwrap_or_default();
    format!(
        "{func}(): unknown option `{key}`; {hint}known options: {}",
        known.join(", ")
    )
}

/// The option list of a call of `func` with `argc` arguments among `lists`, if it takes one.
pub fn find<'a>(lists: &'a [OptionList], func: &str, argc: usize) -> Option<&'a OptionList> {
    lists.iter().find(|l| l.func == func && l.argc == argc)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LISTS: &[OptionList] = &[OptionList {
        func: "exec",
        argc: 2,
        arg: 1,
        known: &["cwd", "timeout"],
        nested: &[],
    }];

    #[test]
    fn finds_the_list_of_the_form_that_takes_the_map() {
        assert_eq!(find(LISTS, "exec", 2).map(|l| l.arg), Some(1));
        assert!(find(LISTS, "exec", 1).is_none());
        assert!(find(LISTS, "sh", 2).is_none());
    }

    #[test]
    fn unknown_option_names_the_nearest_and_all_known() {
        assert_eq!(
            unknown_option("exec", "timout", &["cwd", "timeout"]),
            "exec(): unknown option `timout`; did you mean `timeout`? known options: cwd, timeout"
        );
        assert_eq!(
            unknown_option("exec", "zzzzzz", &["cwd"]),
            "exec(): unknown option `zzzzzz`; known options: cwd"
        );
    }
}
