//! Vault-style output of the secret commands: tables with `== Title ==` headers and Key/Value
//! columns, or the API's JSON answer as JSON or YAML.

use serde_json::{Map, Value};

/// `--format` of the `kv` commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub(crate) enum OutputFormat {
    /// Human-readable tables, as Vault prints them.
    #[default]
    Table,
    /// The API's JSON answer, pretty-printed.
    Json,
    /// The API's answer as YAML.
    Yaml,
}

/// Prints a JSON value as pretty JSON or as YAML (table callers print their own layout).
pub(crate) fn print_structured(format: OutputFormat, value: &Value) -> anyhow::Result<()> {
    match format {
        OutputFormat::Yaml => print!("{}", crate::yaml::to_yaml(value)),
        OutputFormat::Json | OutputFormat::Table => {
            println!("{}", serde_json::to_string_pretty(value)?);
        }
    }
    Ok(())
}

/// A value as a table cell: strings as they are, `null` as `<nil>`, the rest as JSON.
pub(crate) fn cell(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Null => "<nil>".into(),
        other => other.to_string(),
    }
}

/// Metadata rows as Vault shows them: an empty `deletion_time` reads `n/a`.
pub(crate) fn metadata_rows(metadata: &Map<String, Value>, skip: &[&str]) -> Vec<(String, String)> {
    let mut rows: Vec<(String, String)> = metadata
        .iter()
        .filter(|(key, _)| !skip.contains(&key.as_str()))
        .map(|(key, value)| {
            let text = match (key.as_str(), value) {
                ("deletion_time", Value::String(text)) if text.is_empty() => "n/a".into(),
                _ => cell(value),
            };
            (key.clone(), text)
        })
        .collect();
    rows.sort();
    rows
}

/// Data rows, sorted by key.
pub(crate) fn data_rows(data: &Map<String, Value>) -> Vec<(String, String)> {
    let mut rows: Vec<(String, String)> = data
        .iter()
        .map(|(key, value)| (key.clone(), cell(value)))
        .collect();
    rows.sort();
    rows
}

/// `== Title ==`, centred over `width` columns with at least two `=` on each side (Vault's
/// `padEqualSigns`; an odd count is rounded down, so both sides match).
pub(crate) fn header(title: &str, width: usize) -> String {
    let side = (width.saturating_sub(title.len() + 2) / 2).max(2);
    let equals = "=".repeat(side);
    format!("{equals} {title} {equals}")
}

/// A Key/Value table with an optional `== Title ==` header, as wide as Vault makes it: the
/// longest key, four spaces, and the width of the word `Value`.
pub(crate) fn table(title: Option<&str>, rows: &[(String, String)]) -> String {
    let key_width = rows
        .iter()
        .map(|(key, _)| key.len())
        .max()
        .unwrap_or(0)
        .max(3);
    let mut out = String::new();
    if let Some(title) = title {
        out.push_str(&header(title, key_width + 4 + 5));
        out.push('\n');
    }
    out.push_str(&format!("{:key_width$}    Value\n", "Key"));
    out.push_str(&format!("{:key_width$}    -----\n", "---"));
    for (key, value) in rows {
        out.push_str(&format!("{key:key_width$}    {value}\n"));
    }
    out
}

/// A one-line section such as `== Secret Path ==` over `secret/data/app`.
pub(crate) fn path_section(title: &str, path: &str) -> String {
    format!("{}\n{path}\n", header(title, path.len()))
}

#[cfg(test)]
mod tests;
