//! The canonical HCL form of a policy (`custos policy fmt`): one block per rule in the order
//! written, two-space indentation, keys in a fixed order, comments kept (those written inside a
//! block move to its top; those inside lists are dropped).

use std::fmt::Write as _;

use crate::duration::format_duration;
use crate::{PathRule, Policy};

fn quote(text: &str) -> String {
    // JSON string escaping is valid HCL string escaping.
    serde_json::Value::String(text.to_owned()).to_string()
}

fn list<'a>(items: impl IntoIterator<Item = &'a str>) -> String {
    let quoted: Vec<String> = items.into_iter().map(quote).collect();
    format!("[{}]", quoted.join(", "))
}

fn comment_lines(out: &mut String, comments: &[String], indent: &str) {
    // A block comment's later lines are written as they were, so formatting twice changes
    // nothing.
    for comment in comments {
        let _ = writeln!(out, "{indent}{comment}");
    }
}

fn parameters(
    out: &mut String,
    key: &str,
    map: &std::collections::BTreeMap<String, Vec<serde_json::Value>>,
) {
    if map.is_empty() {
        let _ = writeln!(out, "  {key} = {{}}");
        return;
    }
    let _ = writeln!(out, "  {key} = {{");
    for (name, values) in map {
        let values: Vec<String> = values.iter().map(ToString::to_string).collect();
        let _ = writeln!(out, "    {} = [{}]", quote(name), values.join(", "));
    }
    let _ = writeln!(out, "  }}");
}

fn rule(out: &mut String, rule: &PathRule) {
    comment_lines(out, &rule.comments, "");
    // Parsing drops one leading slash of a pattern (as Vault does), so a pattern that still
    // starts with one (written `//x`) gets it back, or the text would parse to another rule.
    let pattern = if rule.path.starts_with('/') {
        format!("/{}", rule.path)
    } else {
        rule.path.clone()
    };
    let _ = writeln!(out, "path {} {{", quote(&pattern));
    comment_lines(out, &rule.inner_comments, "  ");
    if let Some(comment) = &rule.comment {
        let _ = writeln!(out, "  comment = {}", quote(comment));
    }
    if let Some(policy) = rule.policy {
        let _ = writeln!(out, "  policy = {}", quote(policy.as_str()));
    }
    if !rule.capabilities.is_empty() || rule.policy.is_none() {
        let _ = writeln!(
            out,
            "  capabilities = {}",
            list(
                rule.capabilities
                    .iter()
                    .map(|capability| capability.as_str())
            )
        );
    }
    if let Some(map) = &rule.allowed_parameters {
        parameters(out, "allowed_parameters", map);
    }
    if let Some(map) = &rule.denied_parameters {
        parameters(out, "denied_parameters", map);
    }
    if !rule.required_parameters.is_empty() {
        let _ = writeln!(
            out,
            "  required_parameters = {}",
            list(rule.required_parameters.iter().map(String::as_str))
        );
    }
    if let Some(ttl) = rule.min_wrapping_ttl {
        let _ = writeln!(out, "  min_wrapping_ttl = {}", quote(&format_duration(ttl)));
    }
    if let Some(ttl) = rule.max_wrapping_ttl {
        let _ = writeln!(out, "  max_wrapping_ttl = {}", quote(&format_duration(ttl)));
    }
    let conditions = &rule.conditions;
    if !conditions.cidrs.is_empty() {
        let cidrs: Vec<String> = conditions.cidrs.iter().map(ToString::to_string).collect();
        let _ = writeln!(out, "  cidrs = {}", list(cidrs.iter().map(String::as_str)));
    }
    if conditions.require_mfa {
        let _ = writeln!(out, "  require_mfa = true");
    }
    if let Some(time) = conditions.not_before {
        let _ = writeln!(out, "  not_before = {}", quote(&time.to_string()));
    }
    if let Some(time) = conditions.not_after {
        let _ = writeln!(out, "  not_after = {}", quote(&time.to_string()));
    }
    if let Some(zone) = &conditions.time_zone {
        let _ = writeln!(out, "  time_zone = {}", quote(zone));
    }
    if !conditions.days.is_empty() {
        let days: Vec<&str> = conditions.days.iter().map(|day| day_name(*day)).collect();
        let _ = writeln!(out, "  days = {}", list(days));
    }
    if let Some(ttl) = conditions.max_ttl {
        let _ = writeln!(out, "  max_ttl = {}", quote(&format_duration(ttl)));
    }
    let _ = writeln!(out, "}}");
}

pub(crate) fn day_name(day: crate::Weekday) -> &'static str {
    match day {
        jiff::civil::Weekday::Monday => "mon",
        jiff::civil::Weekday::Tuesday => "tue",
        jiff::civil::Weekday::Wednesday => "wed",
        jiff::civil::Weekday::Thursday => "thu",
        jiff::civil::Weekday::Friday => "fri",
        jiff::civil::Weekday::Saturday => "sat",
        jiff::civil::Weekday::Sunday => "sun",
    }
}

/// The canonical HCL text of `policy`. Parsing it gives the same policy back.
pub fn format(policy: &Policy) -> String {
    let mut out = String::new();
    for (index, path_rule) in policy.rules.iter().enumerate() {
        if index > 0 {
            out.push('\n');
        }
        rule(&mut out, path_rule);
    }
    if !policy.trailing_comments.is_empty() {
        if !out.is_empty() {
            out.push('\n');
        }
        comment_lines(&mut out, &policy.trailing_comments, "");
    }
    out
}
