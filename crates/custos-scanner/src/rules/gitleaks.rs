//! gitleaks v8 configuration files, converted into custos rules.
//!
//! Users migrating from gitleaks keep their `.gitleaks.toml`. A file is read as gitleaks
//! only when it fails custos's own format and has a key only gitleaks uses
//! ([`gitleaks_key`]). The conversion keeps meaning: what custos cannot apply is left
//! out with a warning, and where leaving it out would hide findings (a rule) the warning
//! says the rule is skipped. `docs/scanner.md` lists what is converted.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{AllowlistSpec, Condition, Converted, RuleError, RuleSet, RuleSpec};

/// A gitleaks configuration file.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Config {
    /// Shown by gitleaks only; ignored.
    #[serde(default)]
    title: Option<toml::Value>,
    #[serde(default)]
    pub(crate) extend: Extend,
    #[serde(default)]
    rules: Vec<Rule>,
    /// The global allowlist of gitleaks before 8.25.
    #[serde(default)]
    allowlist: Option<Allowlist>,
    /// The global allowlists of gitleaks 8.25 and later.
    #[serde(default)]
    allowlists: Vec<Allowlist>,
    #[serde(flatten)]
    other: BTreeMap<String, toml::Value>,
}

/// The `[extend]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Extend {
    /// gitleaks's own defaults; custos keeps its defaults unless `--no-default-rules`.
    #[serde(default)]
    use_default: Option<bool>,
    /// Another configuration this one builds on, relative to this file.
    #[serde(default)]
    pub(crate) path: Option<String>,
    /// Ids of extended rules to drop.
    #[serde(default)]
    disabled_rules: Vec<String>,
    #[serde(flatten)]
    other: BTreeMap<String, toml::Value>,
}

/// One `[[rules]]` entry.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Rule {
    #[serde(default)]
    id: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    regex: Option<String>,
    #[serde(default)]
    secret_group: Option<i64>,
    #[serde(default)]
    entropy: Option<f64>,
    #[serde(default)]
    keywords: Vec<String>,
    /// Regex on the file path: the rule applies only to matching files.
    #[serde(default)]
    path: Option<String>,
    /// Labels for reports; ignored.
    #[serde(default)]
    tags: Option<toml::Value>,
    /// The single rule allowlist of gitleaks before 8.21.
    #[serde(default)]
    allowlist: Option<Allowlist>,
    #[serde(default)]
    allowlists: Vec<Allowlist>,
    /// Auxiliary rules of composite rules: gitleaks never reports them.
    #[serde(default)]
    skip_report: Option<bool>,
    /// Composite rules: other rules that must match nearby.
    #[serde(default)]
    required: Option<toml::Value>,
    #[serde(flatten)]
    other: BTreeMap<String, toml::Value>,
}

/// A rule or global allowlist.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Allowlist {
    #[serde(default)]
    description: Option<toml::Value>,
    #[serde(default)]
    condition: Option<String>,
    #[serde(default)]
    regex_target: Option<String>,
    #[serde(default)]
    regexes: Vec<String>,
    #[serde(default)]
    paths: Vec<String>,
    #[serde(default)]
    stopwords: Vec<String>,
    #[serde(default)]
    commits: Vec<String>,
    /// Global allowlists only: the rules the allowlist applies to.
    #[serde(default)]
    target_rules: Vec<String>,
    #[serde(flatten)]
    other: BTreeMap<String, toml::Value>,
}

/// Keys a custos rule file never has, by where they occur.
const TOP_LEVEL_KEYS: &[&str] = &["title", "extend"];
const RULE_KEYS: &[&str] = &["secretGroup", "tags", "skipReport", "required"];
const ALLOWLIST_KEYS: &[&str] = &["description", "regexTarget", "targetRules"];

/// A gitleaks-only key of `text`, if it is TOML and has one: the file is then meant for
/// gitleaks.
pub(crate) fn gitleaks_key(text: &str) -> Option<String> {
    let table: toml::Table = toml::from_str(text).ok()?;
    // A declared custos format version settles it.
    if table.contains_key("version") {
        return None;
    }
    let in_allowlist = |value: &toml::Value| -> Option<String> {
        let lists: Vec<&toml::Value> = match value {
            toml::Value::Array(items) => items.iter().collect(),
            other => vec![other],
        };
        lists.into_iter().find_map(|list| {
            let list = list.as_table()?;
            // custos spells conditions in lowercase, gitleaks in uppercase.
            let upper_condition = list
                .get("condition")
                .and_then(toml::Value::as_str)
                .is_some_and(|condition| matches!(condition, "AND" | "OR"));
            ALLOWLIST_KEYS
                .iter()
                .find(|key| list.contains_key(**key))
                .map(|key| (*key).to_owned())
                .or_else(|| upper_condition.then(|| "condition".to_owned()))
        })
    };
    if let Some(key) = TOP_LEVEL_KEYS.iter().find(|key| table.contains_key(**key)) {
        return Some((*key).to_owned());
    }
    for name in ["allowlist", "allowlists"] {
        if let Some(key) = table.get(name).and_then(in_allowlist) {
            return Some(key);
        }
    }
    let rules = table.get("rules")?.as_array()?;
    rules
        .iter()
        .filter_map(toml::Value::as_table)
        .find_map(|rule| {
            RULE_KEYS
                .iter()
                .find(|key| rule.contains_key(**key))
                .map(|key| (*key).to_owned())
                .or_else(|| rule.get("allowlist").and_then(in_allowlist))
                .or_else(|| rule.get("allowlists").and_then(in_allowlist))
        })
}

/// Parses a gitleaks configuration.
pub(crate) fn parse(text: &str) -> Result<Config, toml::de::Error> {
    toml::from_str(text)
}

/// Converts a parsed gitleaks configuration; `existing` is the set it is added to, for
/// `disabledRules`.
pub(crate) fn convert(
    file: &str,
    config: Config,
    existing: &RuleSet,
) -> Result<Converted, RuleError> {
    let mut warnings = Vec::new();
    let _ = (config.title, config.extend.use_default);
    for key in config.other.keys() {
        warnings.push(format!("{file}: unknown key `{key}` is ignored"));
    }
    for key in config.extend.other.keys() {
        warnings.push(format!("{file}: unknown key `extend.{key}` is ignored"));
    }
    let mut disabled = Vec::new();
    for id in config.extend.disabled_rules {
        if existing.rules.iter().any(|rule| rule.id == id) {
            disabled.push(id);
        } else {
            warnings.push(format!(
                "{file}: disabledRules: \"{id}\" is not the id of a loaded rule; it is ignored"
            ));
        }
    }
    let mut rules = Vec::new();
    for rule in config.rules {
        if let Some(spec) = convert_rule(file, rule, &mut warnings)? {
            rules.push(spec);
        }
    }
    let mut allowlists = Vec::new();
    for mut list in config.allowlist.into_iter().chain(config.allowlists) {
        let targets = std::mem::take(&mut list.target_rules);
        let Some(spec) =
            convert_allowlist(&format!("{file}: global allowlist"), list, &mut warnings)
        else {
            continue;
        };
        if targets.is_empty() {
            allowlists.push(spec);
            continue;
        }
        for target in targets {
            match rules.iter_mut().find(|rule: &&mut RuleSpec| rule.id == target) {
                Some(rule) => rule.allowlists.push(spec.clone()),
                None => warnings.push(format!(
                    "{file}: global allowlist: targetRules: \"{target}\" is not a rule of this file; the allowlist does not apply to it"
                )),
            }
        }
    }
    Ok(Converted {
        rules,
        allowlists,
        disabled,
        warnings,
    })
}

fn convert_rule(
    file: &str,
    rule: Rule,
    warnings: &mut Vec<String>,
) -> Result<Option<RuleSpec>, RuleError> {
    let id = rule.id;
    let context = format!("{file}: rule \"{id}\"");
    let invalid = |message: String| RuleError::Invalid {
        id: id.clone(),
        message: format!("{message} (in {file})"),
    };
    let _ = rule.tags;
    for key in rule.other.keys() {
        warnings.push(format!("{context}: unknown key `{key}` is ignored"));
    }
    if rule.skip_report == Some(true) {
        warnings.push(format!(
            "{context}: skipReport marks a helper of composite rules, which gitleaks never reports and custos does not have; the rule is skipped"
        ));
        return Ok(None);
    }
    let Some(regex) = rule.regex else {
        if rule.path.is_some() {
            warnings.push(format!(
                "{context}: a rule with `path` and no `regex` reports files by name, which custos cannot do; the rule is SKIPPED and its findings are missed"
            ));
            return Ok(None);
        }
        return Err(invalid("neither `regex` nor `path`".to_owned()));
    };
    if rule.required.is_some() {
        warnings.push(format!(
            "{context}: `required` (composite rules) is not supported; the rule reports without its required companions"
        ));
    }
    // Without a group, gitleaks reports the first group that matched something.
    let first_matched_group = matches!(rule.secret_group, None | Some(0));
    let secret_group = match rule.secret_group {
        None | Some(0) => None,
        Some(group) => Some(
            usize::try_from(group)
                .map_err(|_| invalid(format!("secretGroup {group} is negative")))?,
        ),
    };
    let entropy = rule.entropy.unwrap_or(0.0);
    if !(0.0..=8.0).contains(&entropy) {
        return Err(invalid(format!("entropy {entropy} is not between 0 and 8")));
    }
    // gitleaks treats an empty keyword as found everywhere, so the rule always runs.
    let keywords = if rule.keywords.iter().any(String::is_empty) {
        Vec::new()
    } else {
        rule.keywords
    };
    let mut allowlists = Vec::new();
    for list in rule.allowlist.into_iter().chain(rule.allowlists) {
        if !list.target_rules.is_empty() {
            warnings.push(format!(
                "{context}: targetRules in a rule allowlist is ignored"
            ));
        }
        if let Some(spec) = convert_allowlist(&format!("{context}: allowlist"), list, warnings) {
            allowlists.push(spec);
        }
    }
    Ok(Some(RuleSpec {
        description: rule.description.unwrap_or_else(|| id.clone()),
        id,
        regex,
        keywords,
        secret_group,
        entropy,
        validate: None,
        starts_with_keyword: false,
        generic: false,
        path: rule.path,
        allowlist: AllowlistSpec::default(),
        allowlists,
        first_matched_group,
    }))
}

/// Converts one allowlist, or drops it (with a warning) when part of it cannot be checked
/// and its condition is AND: applying the rest alone would allow more than gitleaks does.
fn convert_allowlist(
    context: &str,
    list: Allowlist,
    warnings: &mut Vec<String>,
) -> Option<AllowlistSpec> {
    let _ = list.description;
    for key in list.other.keys() {
        warnings.push(format!("{context}: unknown key `{key}` is ignored"));
    }
    let condition = match list.condition.as_deref() {
        None => Condition::Or,
        Some(text) if text.eq_ignore_ascii_case("or") => Condition::Or,
        Some(text) if text.eq_ignore_ascii_case("and") => Condition::And,
        Some(other) => {
            warnings.push(format!(
                "{context}: condition \"{other}\" is neither \"OR\" nor \"AND\"; the allowlist is ignored"
            ));
            return None;
        }
    };
    let mut spec = AllowlistSpec {
        condition,
        paths: list.paths,
        stopwords: list.stopwords,
        commits: list.commits,
        ..AllowlistSpec::default()
    };
    let target = list.regex_target.as_deref().unwrap_or("secret");
    match target {
        _ if list.regexes.is_empty() => {}
        "secret" => spec.regexes = list.regexes,
        "match" => spec.match_regexes = list.regexes,
        "line" => spec.line_regexes = list.regexes,
        other => {
            let what = format!("regexes with regexTarget \"{other}\"");
            if condition == Condition::And {
                warnings.push(format!(
                    "{context}: {what} cannot be checked by custos, so this AND allowlist is ignored"
                ));
                return None;
            }
            warnings.push(format!(
                "{context}: {what} cannot be checked by custos and is ignored; the other entries apply"
            ));
        }
    }
    Some(spec)
}

#[cfg(test)]
mod tests;
