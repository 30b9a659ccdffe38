//! `sys/audit` (list), `sys/audit/<path>` (enable, disable), `sys/audit-hash/<path>` and
//! `sys/audit-verify/<path>`: all root-protected (`sudo`), as in Vault.

use serde_json::{Map, Value, json};

use super::DeviceSpec;
use super::table::normalize;
use crate::logical::{LogicalResponse, Operation};
use crate::pipeline::{Request, object};
use crate::{Engine, EngineError, Unsealed};

/// The most checkpoints one `sys/audit-verify` request may ask about.
pub(crate) const MAX_CHECKPOINTS_PER_VERIFY: usize = 10_000;

/// Option names whose values are never shown by `sys/audit` (no option the file device takes
/// is a secret today; a future one would be hidden by its name).
fn secret_option(name: &str) -> bool {
    ["secret", "password", "token", "key"]
        .iter()
        .any(|word| name.contains(word))
}

/// A string field of the body, if present; anything else than a string is refused.
fn string_field(data: &Map<String, Value>, name: &str) -> Result<Option<String>, EngineError> {
    match data.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(value)) => Ok(Some(value.clone())),
        Some(_) => Err(EngineError::InvalidRequest(format!(
            "{name:?} must be a string"
        ))),
    }
}

/// The body of `PUT sys/audit/<path>` as a device spec.
fn parse_spec(path: &str, data: &Map<String, Value>) -> Result<DeviceSpec, EngineError> {
    let kind = string_field(data, "type")?
        .filter(|kind| !kind.is_empty())
        .ok_or_else(|| EngineError::InvalidRequest("missing audit device \"type\"".into()))?;
    let description = string_field(data, "description")?.unwrap_or_default();
    let local = match data.get("local") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(local)) => *local,
        Some(Value::String(text)) => super::parse_bool("local", text)?,
        Some(_) => {
            return Err(EngineError::InvalidRequest(
                "\"local\" must be a boolean".into(),
            ));
        }
    };
    let mut options = std::collections::BTreeMap::new();
    match data.get("options") {
        None | Some(Value::Null) => {}
        Some(Value::Object(given)) => {
            for (name, value) in given {
                // Vault's options are strings; numbers and booleans are taken as written.
                let value = match value {
                    Value::String(text) => text.clone(),
                    Value::Bool(flag) => flag.to_string(),
                    Value::Number(number) => number.to_string(),
                    _ => {
                        return Err(EngineError::InvalidRequest(format!(
                            "option {name:?} must be a string"
                        )));
                    }
                };
                options.insert(name.clone(), value);
            }
        }
        Some(_) => {
            return Err(EngineError::InvalidRequest(
                "\"options\" must be an object of strings".into(),
            ));
        }
    }
    Ok(DeviceSpec {
        path: normalize(path)?,
        kind,
        description,
        options,
        local,
    })
}

impl Engine {
    /// Serves the `sys/audit*` endpoints; `None` for any other `sys/` path (`rest` is the path
    /// after `sys/`).
    pub(crate) async fn handle_audit(
        &self,
        unsealed: &Unsealed,
        rest: &str,
        request: &Request,
    ) -> Option<Result<Option<LogicalResponse>, EngineError>> {
        let rest = rest.trim_end_matches('/');
        let empty = Map::new();
        let data = request.data.as_ref().unwrap_or(&empty);
        let operation = request.operation;
        let writes = matches!(operation, Operation::Create | Operation::Update);
        if rest == "audit" {
            return Some(match operation {
                Operation::Read => Ok(Some(list(unsealed))),
                _ => Err(EngineError::MethodNotAllowed),
            });
        }
        if let Some(path) = rest.strip_prefix("audit/") {
            return Some(match operation {
                _ if writes => match parse_spec(path, data) {
                    Ok(spec) => unsealed
                        .audit
                        .enable(&unsealed.barrier, spec)
                        .await
                        .map(|()| Some(LogicalResponse::no_content())),
                    Err(error) => Err(error),
                },
                Operation::Delete => match normalize(path) {
                    Ok(path) => unsealed
                        .audit
                        .disable(&unsealed.barrier, &path)
                        .await
                        .map(|()| Some(LogicalResponse::no_content())),
                    Err(error) => Err(error),
                },
                _ => Err(EngineError::MethodNotAllowed),
            });
        }
        if let Some(path) = rest.strip_prefix("audit-hash/") {
            return Some(if writes {
                hash(unsealed, path, data)
            } else {
                Err(EngineError::MethodNotAllowed)
            });
        }
        if let Some(path) = rest.strip_prefix("audit-verify/") {
            return Some(if writes {
                verify(unsealed, path, data)
            } else {
                Err(EngineError::MethodNotAllowed)
            });
        }
        None
    }
}

/// `GET sys/audit`: every device, by path, as Vault lists them.
fn list(unsealed: &Unsealed) -> LogicalResponse {
    let mut out = Map::new();
    for device in unsealed.audit.devices().iter() {
        let spec = &device.spec;
        let options: Map<String, Value> = spec
            .options
            .iter()
            .map(|(name, value)| {
                let shown = if secret_option(name) {
                    "<redacted>".to_owned()
                } else {
                    value.clone()
                };
                (name.clone(), Value::String(shown))
            })
            .collect();
        out.insert(
            spec.path.clone(),
            json!({
                "type": spec.kind,
                "description": spec.description,
                "options": options,
                "local": spec.local,
                "path": spec.path,
            }),
        );
    }
    LogicalResponse::data(out)
}

/// `POST sys/audit-hash/<path>`: the hash the device's records show for `input`.
fn hash(
    unsealed: &Unsealed,
    path: &str,
    data: &Map<String, Value>,
) -> Result<Option<LogicalResponse>, EngineError> {
    let input = string_field(data, "input")?.unwrap_or_default();
    if input.is_empty() {
        return Err(EngineError::InvalidRequest(
            "the \"input\" parameter is empty".into(),
        ));
    }
    let device = unsealed.audit.device(path).ok_or_else(|| unknown(path))?;
    Ok(Some(object(json!({ "hash": device.hash(&input) }))))
}

fn unknown(path: &str) -> EngineError {
    EngineError::InvalidRequest(format!(
        "unknown audit backend {:?}",
        format!("{}/", path.trim_matches('/'))
    ))
}

/// `POST sys/audit-verify/<path>`: whether each checkpoint's signature is the device's, and the
/// device's chain head. It verifies only; it never signs what a caller sends.
fn verify(
    unsealed: &Unsealed,
    path: &str,
    data: &Map<String, Value>,
) -> Result<Option<LogicalResponse>, EngineError> {
    let device = unsealed.audit.device(path).ok_or_else(|| unknown(path))?;
    let checkpoints = match data.get("checkpoints") {
        Some(Value::Array(checkpoints)) => checkpoints,
        _ => {
            return Err(EngineError::InvalidRequest(
                "\"checkpoints\" must be a list of {\"payload\", \"signature\"} objects".into(),
            ));
        }
    };
    if checkpoints.len() > MAX_CHECKPOINTS_PER_VERIFY {
        return Err(EngineError::InvalidRequest(format!(
            "at most {MAX_CHECKPOINTS_PER_VERIFY} checkpoints per request"
        )));
    }
    let valid: Vec<Value> = checkpoints
        .iter()
        .map(|checkpoint| {
            let payload = checkpoint.get("payload").and_then(Value::as_str);
            let signature = checkpoint.get("signature").and_then(Value::as_str);
            Value::Bool(match (payload, signature) {
                (Some(payload), Some(signature)) => {
                    device.verify_checkpoint(payload.as_bytes(), signature)
                }
                _ => false,
            })
        })
        .collect();
    let mut out = Map::new();
    out.insert("valid".into(), Value::Array(valid));
    if let Some((seq, hash)) = device.head() {
        out.insert("head".into(), json!({ "seq": seq, "hash": hash }));
    }
    Ok(Some(LogicalResponse::data(out)))
}
