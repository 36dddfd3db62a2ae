//! GitHub Actions workflow commands (`::name k=v,k=v::message`): their escaping rules and
//! the group lines. Pure; `report::github` builds the run's annotations with them and the
//! console writes the groups.

/// Escapes a command's message: `%`, CR and LF, as the workflow-command rules say.
pub fn escape_data(text: &str) -> String {
    text.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// Escapes a command's property value: as [`escape_data`], and `:` and `,` too.
pub fn escape_property(text: &str) -> String {
    escape_data(text).replace(':', "%3A").replace(',', "%2C")
}

/// A workflow command line: `::name k=v,k=v::message`, everything escaped.
pub fn command(name: &str, properties: &[(&str, String)], message: &str) -> String {
    let props: Vec<String> = properties
        .iter()
        .map(|(k, v)| format!("{k}={}", escape_property(v)))
        .collect();
    let sep = if props.is_empty() { "" } else { " " };
    format!("::{name}{sep}{}::{}", props.join(","), escape_data(message))
}

/// The line that opens a collapsed group in the log.
pub fn group(title: &str) -> String {
    command("group", &[], title)
}

/// The line that closes the open group.
pub const END_GROUP: &str = "::endgroup::";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_follow_the_workflow_command_rules() {
        assert_eq!(escape_data("50% a\r\nb: c, d"), "50%25 a%0D%0Ab: c, d");
        assert_eq!(escape_property("a:b,c%\n"), "a%3Ab%2Cc%25%0A");
        assert_eq!(
            command(
                "error",
                &[("file", "x,y.rhai".into()), ("line", "3".into())],
                "m: 1%"
            ),
            "::error file=x%2Cy.rhai,line=3::m: 1%25"
        );
        assert_eq!(group("1. Build"), "::group::1. Build");
        assert_eq!(command("warning", &[], "w"), "::warning::w");
    }
}
