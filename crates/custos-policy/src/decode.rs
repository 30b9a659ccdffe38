//! The policy layer of the parser: the generic tree of `syntax.rs` → [`Policy`], with errors that
//! name the line of the offending value.

use std::collections::BTreeMap;

use crate::syntax::{Item, Node, Object, Pos, Value};
use crate::{
    Capability, Conditions, MAX_PATH_RULES, ParseError, PathRule, Policy, Shorthand, TimeOfDay,
    Weekday, parse_duration,
};

fn error(pos: Pos, message: impl Into<String>) -> ParseError {
    ParseError::at(pos.line, None, message)
}

fn describe(value: &Value) -> &'static str {
    match value {
        Value::Str(_) => "a string",
        Value::Number(_) => "a number",
        Value::Bool(_) => "a boolean",
        Value::List(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn expected(key: &str, wanted: &str, node: &Node) -> ParseError {
    error(
        node.pos,
        format!("{key} must be {wanted}, not {}", describe(&node.value)),
    )
}

fn string<'a>(key: &str, node: &'a Node) -> Result<&'a str, ParseError> {
    match &node.value {
        Value::Str(text) => Ok(text),
        _ => Err(expected(key, "a string", node)),
    }
}

fn strings<'a>(key: &str, node: &'a Node) -> Result<Vec<(Pos, &'a str)>, ParseError> {
    match &node.value {
        Value::List(values) => values
            .iter()
            .map(|value| match &value.value {
                Value::Str(text) => Ok((value.pos, text.as_str())),
                _ => Err(expected(key, "a list of strings", node)),
            })
            .collect(),
        _ => Err(expected(key, "a list of strings", node)),
    }
}

fn duration(key: &str, node: &Node) -> Result<u64, ParseError> {
    match &node.value {
        Value::Str(text) => {
            parse_duration(text).map_err(|why| error(node.pos, format!("{key}: {why}")))
        }
        Value::Number(number) => number.as_u64().ok_or_else(|| {
            error(
                node.pos,
                format!("{key} must be a non-negative number of seconds"),
            )
        }),
        _ => Err(expected(key, "a duration", node)),
    }
}

fn time_of_day(key: &str, node: &Node) -> Result<TimeOfDay, ParseError> {
    let text = string(key, node)?;
    let bad = || {
        error(
            node.pos,
            format!("{key} {text:?} is not a time of day such as \"09:00\" or \"17:30:00\""),
        )
    };
    let parts: Vec<&str> = text.split(':').collect();
    if !(2..=3).contains(&parts.len()) || parts.iter().any(|part| part.len() != 2) {
        return Err(bad());
    }
    let number = |part: &str, limit: u32| {
        part.parse::<u32>()
            .ok()
            .filter(|value| *value < limit && part.bytes().all(|b| b.is_ascii_digit()))
    };
    let hours = parts
        .first()
        .and_then(|part| number(part, 24))
        .ok_or_else(bad)?;
    let minutes = parts
        .get(1)
        .and_then(|part| number(part, 60))
        .ok_or_else(bad)?;
    let seconds = match parts.get(2) {
        Some(part) => number(part, 60).ok_or_else(bad)?,
        None => 0,
    };
    Ok(TimeOfDay(hours * 3600 + minutes * 60 + seconds))
}

fn weekday(pos: Pos, text: &str) -> Result<Weekday, ParseError> {
    let day = match text.to_ascii_lowercase().as_str() {
        "mon" | "monday" => Weekday::Monday,
        "tue" | "tuesday" => Weekday::Tuesday,
        "wed" | "wednesday" => Weekday::Wednesday,
        "thu" | "thursday" => Weekday::Thursday,
        "fri" | "friday" => Weekday::Friday,
        "sat" | "saturday" => Weekday::Saturday,
        "sun" | "sunday" => Weekday::Sunday,
        _ => {
            return Err(error(
                pos,
                format!("unknown day {text:?}: use mon, tue, wed, thu, fri, sat or sun"),
            ));
        }
    };
    Ok(day)
}

fn parameter_value(key: &str, node: &Node) -> Result<serde_json::Value, ParseError> {
    Ok(match &node.value {
        Value::Str(text) => serde_json::Value::String(text.clone()),
        Value::Number(number) => serde_json::Value::Number(number.clone()),
        Value::Bool(flag) => serde_json::Value::Bool(*flag),
        _ => {
            return Err(expected(
                key,
                "a list of strings, numbers or booleans",
                node,
            ));
        }
    })
}

fn parameters(
    key: &str,
    node: &Node,
) -> Result<BTreeMap<String, Vec<serde_json::Value>>, ParseError> {
    let Value::Object(object) = &node.value else {
        return Err(expected(key, "an object of parameter = [values]", node));
    };
    let mut map = BTreeMap::new();
    for item in &object.items {
        let values = match &item.value.value {
            Value::List(values) => values
                .iter()
                .map(|value| parameter_value(key, value))
                .collect::<Result<Vec<_>, _>>()?,
            // A single value is a list of one, as HCL's decoder reads it.
            _ => vec![parameter_value(key, &item.value)?],
        };
        // Vault lower-cases parameter names; the same name twice adds up.
        map.entry(item.key.to_lowercase())
            .or_insert_with(Vec::new)
            .extend(values);
    }
    Ok(map)
}

/// Keys Vault knows in a path block that custos does not implement. Ignoring one would grant
/// more than its author meant, so they are refused.
const UNSUPPORTED: [&str; 5] = [
    "mfa_methods",
    "control_group",
    "pagination_limit",
    "expiration",
    "list_scan_response_keys_filter_path",
];

fn path_rule(path: &Item) -> Result<PathRule, ParseError> {
    let Value::Object(block) = &path.value.value else {
        return Err(expected(
            &format!("path {:?}", path.key),
            "a block",
            &path.value,
        ));
    };
    let mut rule = PathRule {
        path: path.key.strip_prefix('/').unwrap_or(&path.key).to_owned(),
        line: path.key_pos.line,
        comments: path.comments.clone(),
        ..PathRule::default()
    };
    if rule.path.contains("+*") {
        return Err(error(
            path.key_pos,
            format!(
                "path {:?}: invalid use of wildcards ('+*' is forbidden)",
                rule.path
            ),
        ));
    }
    if let Some(star) = rule.path.find('*')
        && star + 1 != rule.path.len()
    {
        return Err(error(
            path.key_pos,
            format!(
                "path {:?}: \"*\" is only allowed at the end of a path",
                rule.path
            ),
        ));
    }
    let mut conditions = Conditions::default();
    let mut seen: Vec<&str> = Vec::new();
    for item in &block.items {
        let key = item.key.as_str();
        let node = &item.value;
        rule.inner_comments.extend(item.comments.iter().cloned());
        if seen.contains(&key) {
            return Err(error(item.key_pos, format!("{key} is set twice")));
        }
        seen.push(key);
        match key {
            "capabilities" => {
                for (pos, name) in strings(key, node)? {
                    let capability = Capability::parse(name)
                        .ok_or_else(|| error(pos, format!("unknown capability {name:?}")))?;
                    rule.capabilities.push(capability);
                }
            }
            "policy" => {
                let name = string(key, node)?;
                rule.policy = Some(Shorthand::parse(name).ok_or_else(|| {
                    error(
                        node.pos,
                        format!("invalid policy {name:?}: use deny, read, write or sudo"),
                    )
                })?);
            }
            "allowed_parameters" => rule.allowed_parameters = Some(parameters(key, node)?),
            "denied_parameters" => rule.denied_parameters = Some(parameters(key, node)?),
            "required_parameters" => {
                rule.required_parameters = strings(key, node)?
                    .into_iter()
                    .map(|(_, name)| name.to_owned())
                    .collect();
            }
            "min_wrapping_ttl" => rule.min_wrapping_ttl = Some(duration(key, node)?),
            "max_wrapping_ttl" => rule.max_wrapping_ttl = Some(duration(key, node)?),
            "comment" => rule.comment = Some(string(key, node)?.to_owned()),
            "cidrs" => {
                for (pos, text) in strings(key, node)? {
                    let cidr = text
                        .parse::<custos_core::Cidr>()
                        .map_err(|why| error(pos, format!("cidrs: {text:?}: {why}")))?;
                    conditions.cidrs.push(cidr);
                }
                if conditions.cidrs.is_empty() {
                    return Err(error(
                        node.pos,
                        "cidrs is empty: list at least one block, or leave it out",
                    ));
                }
            }
            "require_mfa" => match &node.value {
                Value::Bool(flag) => conditions.require_mfa = *flag,
                _ => return Err(expected(key, "true or false", node)),
            },
            "not_before" => conditions.not_before = Some(time_of_day(key, node)?),
            "not_after" => conditions.not_after = Some(time_of_day(key, node)?),
            "time_zone" => {
                let zone = string(key, node)?;
                if zone.is_empty() {
                    return Err(error(node.pos, "time_zone is empty"));
                }
                conditions.time_zone = Some(zone.to_owned());
            }
            "days" => {
                for (pos, text) in strings(key, node)? {
                    let day = weekday(pos, text)?;
                    if !conditions.days.contains(&day) {
                        conditions.days.push(day);
                    }
                }
                if conditions.days.is_empty() {
                    return Err(error(
                        node.pos,
                        "days is empty: list at least one day, or leave it out",
                    ));
                }
            }
            "max_ttl" => conditions.max_ttl = Some(duration(key, node)?),
            _ if UNSUPPORTED.contains(&key) => {
                return Err(error(
                    item.key_pos,
                    format!("path {:?}: {key:?} is not supported by custos", rule.path),
                ));
            }
            _ => {
                return Err(error(
                    item.key_pos,
                    format!("path {:?}: unknown key {key:?}", rule.path),
                ));
            }
        }
    }
    rule.inner_comments
        .extend(block.trailing_comments.iter().cloned());
    if let (Some(min), Some(max)) = (rule.min_wrapping_ttl, rule.max_wrapping_ttl)
        && max < min
    {
        return Err(error(
            path.key_pos,
            "max_wrapping_ttl cannot be less than min_wrapping_ttl",
        ));
    }
    if conditions.time_zone.is_some()
        && conditions.not_before.is_none()
        && conditions.not_after.is_none()
        && conditions.days.is_empty()
    {
        return Err(error(
            path.key_pos,
            format!(
                "path {:?}: time_zone needs not_before, not_after or days",
                rule.path
            ),
        ));
    }
    rule.conditions = conditions;
    Ok(rule)
}

/// The path blocks of a `path` item: `path "x" { }` (one), `path = { "x" = {}, "y" = {} }`, or
/// JSON's `"path": [{ "x": {} }]` and `"path": {"x": [{}, {}]}` (a list of blocks for one path).
fn path_items(item: &Item, into: &mut Vec<(Item, Vec<String>)>) -> Result<(), ParseError> {
    let mut first = true;
    let mut add =
        |object: &Object, into: &mut Vec<(Item, Vec<String>)>| -> Result<(), ParseError> {
            for path in &object.items {
                let comments = if std::mem::take(&mut first) {
                    item.comments.clone()
                } else {
                    Vec::new()
                };
                match &path.value.value {
                    Value::List(blocks) => {
                        for block in blocks {
                            into.push((
                                Item {
                                    key: path.key.clone(),
                                    key_pos: path.key_pos,
                                    value: block.clone(),
                                    comments: Vec::new(),
                                },
                                Vec::new(),
                            ));
                        }
                    }
                    _ => into.push((path.clone(), comments)),
                }
            }
            Ok(())
        };
    match &item.value.value {
        Value::Object(object) => add(object, into)?,
        Value::List(values) => {
            for value in values {
                match &value.value {
                    Value::Object(object) => add(object, into)?,
                    _ => return Err(expected("path", "an object of path blocks", value)),
                }
            }
        }
        _ => return Err(expected("path", "a block", &item.value)),
    }
    Ok(())
}

pub(crate) fn policy(name: &str, object: Object) -> Result<Policy, ParseError> {
    let mut policy = Policy {
        name: name.to_owned(),
        rules: Vec::new(),
        trailing_comments: object.trailing_comments.clone(),
    };
    let mut blocks = Vec::new();
    for item in &object.items {
        match item.key.as_str() {
            "path" => path_items(item, &mut blocks)?,
            // Vault accepts (and ignores) a top-level name.
            "name" => {
                string("name", &item.value)?;
            }
            other => {
                return Err(error(
                    item.key_pos,
                    format!("unknown key {other:?}: a policy holds only path blocks"),
                ));
            }
        }
    }
    if blocks.len() > MAX_PATH_RULES {
        return Err(ParseError::whole(format!(
            "policy has {} path rules, more than the limit of {MAX_PATH_RULES}",
            blocks.len()
        )));
    }
    for (item, comments) in blocks {
        let mut rule = path_rule(&item)?;
        let mut leading = comments;
        leading.append(&mut rule.comments);
        rule.comments = leading;
        policy.rules.push(rule);
    }
    Ok(policy)
}
