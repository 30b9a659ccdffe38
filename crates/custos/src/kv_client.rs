//! KV secrets over the HTTP API, as Vault's CLI reaches them: find the mount of a path and its KV
//! version first (`sys/internal/ui/mounts/<path>`), then use `<mount>/data/<path>` and friends on
//! version 2 mounts and `<mount>/<path>` on version 1 mounts.
//!
//! Shared by `custos kv`, `custos run`, `custos export` and `custos import`.

use anyhow::{Context, bail};
use custos_client::http::{Method, StatusCode};
use custos_client::{Client, ClientError};
use serde_json::{Map, Value};

/// A secret that does not exist (or whose version is deleted or destroyed). Commands print its
/// message alone and exit with 2, as Vault's CLI does.
#[derive(Debug)]
pub(crate) struct NotFound {
    /// The API path that was asked for, such as `secret/data/app`.
    pub(crate) path: String,
    /// The 404 answer of a soft-deleted or destroyed v2 version, which still carries the
    /// version's metadata.
    pub(crate) deleted: Option<Value>,
}

impl std::fmt::Display for NotFound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "No value found at {}", self.path)
    }
}

impl std::error::Error for NotFound {}

/// The KV engine version of a mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KvVersion {
    V1,
    V2,
}

/// A path inside a KV mount, with the mount it was found in.
#[derive(Debug, Clone)]
pub(crate) struct KvPath {
    /// The mount path, with its trailing slash: `secret/`.
    pub(crate) mount: String,
    pub(crate) version: KvVersion,
    /// The path inside the mount, without leading or trailing slashes: `app/db`.
    pub(crate) relative: String,
}

impl KvPath {
    /// Where the secret's data lives: `secret/data/app` (v2) or `kv/app` (v1).
    pub(crate) fn data_path(&self) -> String {
        match self.version {
            KvVersion::V2 => self.endpoint("data"),
            KvVersion::V1 => format!("{}{}", self.mount, self.relative),
        }
    }

    /// A v2 endpoint for this secret: `secret/<endpoint>/app`.
    pub(crate) fn endpoint(&self, endpoint: &str) -> String {
        if self.relative.is_empty() {
            format!("{}{endpoint}/", self.mount)
        } else {
            format!("{}{endpoint}/{}", self.mount, self.relative)
        }
    }

    /// Refuses the mount root where a secret path is needed.
    pub(crate) fn require_secret(&self) -> anyhow::Result<()> {
        if self.relative.is_empty() {
            bail!(
                "{:?} is a mount, not a secret: add the secret's path, such as {}app",
                self.mount,
                self.mount
            );
        }
        Ok(())
    }

    /// Refuses a KV version 1 mount for commands that need versions or metadata.
    pub(crate) fn require_v2(&self, command: &str) -> anyhow::Result<()> {
        if self.version == KvVersion::V1 {
            bail!(
                "{command} needs a KV version 2 mount, and {:?} is version 1",
                self.mount
            );
        }
        Ok(())
    }
}

/// Trims slashes and refuses empty or `..` segments.
fn clean(path: &str) -> anyhow::Result<String> {
    let trimmed = path.trim_matches('/');
    if trimmed.split('/').any(|segment| segment == "..") {
        bail!("invalid path {path:?}: `..` is not allowed");
    }
    Ok(trimmed.to_owned())
}

/// Finds the mount of `path` (or of `mount` when given, with `path` inside it) and its KV version.
pub(crate) async fn resolve(
    client: &Client,
    mount: Option<&str>,
    path: &str,
) -> anyhow::Result<KvPath> {
    let full = match mount {
        Some(mount) => {
            let mount = clean(mount)?;
            if mount.is_empty() {
                bail!("--mount must not be empty");
            }
            format!("{mount}/{}", clean(path)?)
        }
        None => clean(path)?,
    };
    if full.is_empty() {
        bail!("missing path: give one like secret/app, or --mount secret app");
    }
    let lookup = format!("sys/internal/ui/mounts/{}", encode_path(&full));
    let answer = send(client, Method::GET, &lookup, None)
        .await
        .with_context(|| format!("cannot find the mount of {full:?}"))?;
    let Some(data) = answer.body.as_ref().and_then(|body| body.get("data")) else {
        bail!("cannot find the mount of {full:?}: the server answered without data");
    };
    let mount_path = data
        .get("path")
        .and_then(Value::as_str)
        .context("the mount lookup answered without a path")?;
    let kind = data.get("type").and_then(Value::as_str).unwrap_or_default();
    if !matches!(kind, "kv" | "generic") {
        bail!("{mount_path:?} is a {kind:?} mount, not a kv mount");
    }
    let version = match data
        .get("options")
        .and_then(|options| options.get("version"))
        .and_then(Value::as_str)
    {
        Some("2") => KvVersion::V2,
        _ => KvVersion::V1,
    };
    let mount_path = format!("{}/", mount_path.trim_end_matches('/'));
    let relative = format!("{full}/")
        .strip_prefix(&mount_path)
        .map(|rest| rest.trim_matches('/').to_owned())
        .with_context(|| format!("the server placed {full:?} in mount {mount_path:?}"))?;
    Ok(KvPath {
        mount: mount_path,
        version,
        relative,
    })
}

/// Percent-encodes a path for a URL, keeping `/` and unreserved characters.
pub(crate) fn encode_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for byte in path.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// A successful (or 404) answer: its status and JSON body, if any.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) body: Option<Value>,
}

impl Answer {
    /// The `data` object of the answer.
    pub(crate) fn data(&self) -> Option<&Map<String, Value>> {
        self.body
            .as_ref()
            .and_then(|body| body.get("data"))
            .and_then(Value::as_object)
    }
}

/// Sends one request to `path` (already URL-encoded). A 404 comes back as an [`Answer`] (its
/// body tells a deleted version from a missing secret); other error statuses become errors that
/// carry the server's messages.
pub(crate) async fn send(
    client: &Client,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> anyhow::Result<Answer> {
    let body = body.map(serde_json::to_vec).transpose()?;
    let (status, code, bytes) = if method == Method::PATCH {
        client
            .raw_with_content_type(
                method,
                path,
                "application/merge-patch+json",
                body.unwrap_or_default(),
            )
            .await?
    } else {
        client.raw(method, path, body).await?
    };
    let parsed: Option<Value> = if bytes.is_empty() {
        None
    } else {
        serde_json::from_slice(&bytes).ok()
    };
    if status.is_success() || status == StatusCode::NOT_FOUND {
        return Ok(Answer {
            status,
            body: parsed,
        });
    }
    let errors = parsed
        .as_ref()
        .and_then(|body| body.get("errors"))
        .and_then(Value::as_array)
        .map(|errors| {
            errors
                .iter()
                .filter_map(|error| error.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    Err(ClientError::Api {
        status: status.as_u16(),
        errors,
        code,
    }
    .into())
}

/// Reads a secret's data (the latest version, or `version`). Returns the API's whole answer
/// and the secret's key/value pairs; a missing secret or version is a [`NotFound`] error.
pub(crate) async fn read(
    client: &Client,
    path: &KvPath,
    version: Option<u64>,
) -> anyhow::Result<(Value, Map<String, Value>)> {
    path.require_secret()?;
    let mut api_path = encode_path(&path.data_path());
    if let Some(version) = version {
        path.require_v2("--version")?;
        api_path.push_str(&format!("?version={version}"));
    }
    let answer = send(client, Method::GET, &api_path, None).await?;
    let not_found = || NotFound {
        path: path.data_path(),
        deleted: None,
    };
    if answer.status == StatusCode::NOT_FOUND {
        let deleted = answer
            .body
            .filter(|body| body.pointer("/data/metadata").is_some_and(Value::is_object));
        return Err(NotFound {
            path: path.data_path(),
            deleted,
        }
        .into());
    }
    let data = answer.data().ok_or_else(not_found)?;
    let secret = match path.version {
        KvVersion::V2 => data
            .get("data")
            .and_then(Value::as_object)
            .cloned()
            .ok_or_else(not_found)?,
        KvVersion::V1 => data.clone(),
    };
    let body = answer.body.unwrap_or(Value::Null);
    Ok((body, secret))
}

/// Writes `data` as the secret's new value (a new version on v2, with check-and-set when `cas`
/// is given) and returns the API's answer (`None` on v1, which answers 204).
pub(crate) async fn write(
    client: &Client,
    path: &KvPath,
    data: Map<String, Value>,
    cas: Option<u64>,
) -> anyhow::Result<Option<Value>> {
    path.require_secret()?;
    let body = match path.version {
        KvVersion::V2 => v2_data_body(data, cas),
        KvVersion::V1 => {
            if cas.is_some() {
                path.require_v2("--cas")?;
            }
            Value::Object(data)
        }
    };
    send_data(client, Method::PUT, path, &body).await
}

/// Merges `data` into the secret's latest version (v2 only, with check-and-set when `cas` is
/// given) and returns the API's answer.
pub(crate) async fn patch(
    client: &Client,
    path: &KvPath,
    data: Map<String, Value>,
    cas: Option<u64>,
) -> anyhow::Result<Option<Value>> {
    path.require_secret()?;
    path.require_v2("patch")?;
    send_data(client, Method::PATCH, path, &v2_data_body(data, cas)).await
}

/// The body of a v2 write: the data, and the check-and-set version when there is one.
fn v2_data_body(data: Map<String, Value>, cas: Option<u64>) -> Value {
    let mut body = serde_json::json!({ "data": data });
    if let Some(cas) = cas {
        body["options"] = serde_json::json!({ "cas": cas });
    }
    body
}

/// Sends `body` to the secret's data endpoint and returns the API's answer; a 404 (no such
/// mount or path) is a [`NotFound`] error.
async fn send_data(
    client: &Client,
    method: Method,
    path: &KvPath,
    body: &Value,
) -> anyhow::Result<Option<Value>> {
    let answer = send(client, method, &encode_path(&path.data_path()), Some(body)).await?;
    if answer.status == StatusCode::NOT_FOUND {
        return Err(NotFound {
            path: path.data_path(),
            deleted: None,
        }
        .into());
    }
    Ok(answer.body)
}

#[cfg(test)]
mod tests;
