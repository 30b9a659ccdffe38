//! `?help=1` on any path: Vault's help answer, `{"help": ..., "openapi": ..., "see_also": ...}`,
//! which `vault path-help` / `bao path-help` print.
//!
//! Like Vault, help needs a valid token and a routable path (404 otherwise), reads nothing and
//! changes nothing. The text names the request, the matching route and what the path does; the
//! `openapi` document describes that one route.

use serde_json::{Map, Value, json};

use crate::{Engine, EngineError};

/// The help of one route: the pattern as Vault prints it, a one-line synopsis and a description.
struct Topic {
    route: &'static str,
    synopsis: &'static str,
    description: &'static str,
}

const KV_V2_DATA: Topic = Topic {
    route: "^data/(?P<path>.*)$",
    synopsis: "Write, Patch, Read, and Delete data in the Key-Value Store.",
    description: "GET reads the current version (or ?version=N), PUT/POST writes a new version from {\"data\": {...}, \"options\": {\"cas\": N}}, PATCH (application/merge-patch+json) merges into the current version, DELETE soft-deletes the current version.",
};
const KV_V2_METADATA: Topic = Topic {
    route: "^metadata/(?P<path>.*)$",
    synopsis: "Configures settings for the KV store",
    description: "GET reads a secret's metadata and versions, LIST lists keys, PUT/POST sets max_versions, cas_required, delete_version_after and custom_metadata, PATCH merges them, DELETE removes every version and the metadata for good.",
};
const KV_V2_DELETE: Topic = Topic {
    route: "^delete/(?P<path>.*)$",
    synopsis: "Marks one or more versions as deleted in the KV store.",
    description: "POST {\"versions\": [N, ...]} soft-deletes those versions; undelete restores them.",
};
const KV_V2_UNDELETE: Topic = Topic {
    route: "^undelete/(?P<path>.*)$",
    synopsis: "Undeletes one or more versions from the KV store.",
    description: "POST {\"versions\": [N, ...]} restores soft-deleted versions; destroyed versions stay destroyed.",
};
const KV_V2_DESTROY: Topic = Topic {
    route: "^destroy/(?P<path>.*)$",
    synopsis: "Permanently removes one or more versions in the KV store",
    description: "POST {\"versions\": [N, ...]} removes the data of those versions for good.",
};
const KV_V2_SUBKEYS: Topic = Topic {
    route: "^subkeys/(?P<path>.*)$",
    synopsis: "Read the structure of a secret entry from the Key-Value store with the values removed.",
    description: "GET answers the secret's keys with every leaf value replaced by null (?depth=N limits the depth).",
};
const KV_V2_CONFIG: Topic = Topic {
    route: "^config$",
    synopsis: "Configures settings for the KV store",
    description: "GET reads, PUT/POST sets the mount's max_versions, cas_required and delete_version_after.",
};
const KV_V2_OTHER: Topic = Topic {
    route: "^(data|metadata|delete|undelete|destroy|subkeys)/(?P<path>.*)$|^config$",
    synopsis: "KV version 2: versioned secrets under data/, their metadata under metadata/.",
    description: "Paths: data/<path>, metadata/<path>, delete/<path>, undelete/<path>, destroy/<path>, subkeys/<path> and config.",
};
const KV_V1: Topic = Topic {
    route: "^.*$",
    synopsis: "Pass-through secret storage to the storage backend, allowing you to read/write arbitrary data into secret storage.",
    description: "GET reads the secret (lease_duration is its ttl field, else the mount's default lease TTL), PUT/POST replaces it with the request body, DELETE removes it, LIST lists the keys under a folder.",
};
const SYS_MOUNTS: Topic = Topic {
    route: "^mounts(?:/(?P<path>.+?))?$",
    synopsis: "List the currently mounted backends.",
    description: "GET /sys/mounts lists the mounts; POST /sys/mounts/<path> mounts an engine; DELETE unmounts it; GET/POST /sys/mounts/<path>/tune reads or changes its settings.",
};
const SYS_AUTH: Topic = Topic {
    route: "^auth(?:/(?P<path>.+?))?$",
    synopsis: "List the currently enabled credential backends.",
    description: "GET /sys/auth lists the auth methods; POST /sys/auth/<path> enables one (type, description, config); DELETE disables it and deletes its data; GET/POST /sys/auth/<path>/tune reads or changes its TTLs and description.",
};
const USERPASS_USERS: Topic = Topic {
    route: "^users/(?P<username>[^/]+)(/(password|policies|totp))?$",
    synopsis: "Manage users allowed to authenticate.",
    description: "PUT/POST users/<name> creates or updates a user (password, token_policies, token_ttl, token_max_ttl, token_bound_cidrs, ...), GET reads it without the password, DELETE removes it, LIST users lists them; users/<name>/password and users/<name>/policies change one thing; users/<name>/totp enrols (POST, shows the secret once), reports (GET) or removes (DELETE) TOTP.",
};
const USERPASS_LOGIN: Topic = Topic {
    route: "^login/(?P<username>.+)$",
    synopsis: "Log in with a username and password.",
    description: "POST {\"password\": ...} (and \"totp\": the 6-digit code once enrolled) answers a token in the auth block. Needs no token; failed logins are counted and lock a user or an address out for a while (429).",
};
const USERPASS_OTHER: Topic = Topic {
    route: "^(users|login)/.*$",
    synopsis: "The userpass auth method: users with passwords and optional TOTP.",
    description: "Paths: users, users/<name>, users/<name>/password, users/<name>/policies, users/<name>/totp and login/<name>.",
};
const AUTH_OTHER: Topic = Topic {
    route: "^.*$",
    synopsis: "An auth method: its login paths need no token, every other path does.",
    description: "See docs/auth.md for the auth methods custos offers and their paths.",
};
const SYS_HEALTH: Topic = Topic {
    route: "^health$",
    synopsis: "Checks the health of the server.",
    description: "200 when unsealed, 503 when sealed, 501 when not initialised; activecode, sealedcode, uninitcode and standbycode override the codes.",
};
const SYS_WRAPPING: Topic = Topic {
    route: "^wrapping/(?P<operation>wrap|unwrap|lookup|rewrap)$",
    synopsis: "Response-wrapping token operations.",
    description: "wrap stores the request body behind a single-use token (X-Vault-Wrap-TTL), unwrap returns it once, lookup shows a token's TTL and creation path, rewrap moves it to a new token.",
};
const SYS_SEAL: Topic = Topic {
    route: "^(seal-status|seal|unseal|init|leader|key-status|rotate)$",
    synopsis: "The seal life cycle of the server.",
    description: "seal-status, init, unseal and seal as in Vault; key-status and rotate manage the barrier's encryption keys.",
};
const SYS_INVENTORY: Topic = Topic {
    route: "^inventory$",
    synopsis: "Who uses which credential, from where.",
    description: "GET lists every credential (token accessor, AppRole role and secret id, userpass user, certificate) with its first and last use, requests, source addresses, user agents and certificate fingerprints, and every live token, used or not. Filters: unused_since (RFC 3339 or 720h, 30d), min_addresses, auth_method, policy, kind; pages: limit, after. See docs/inventory.md.",
};
const SYS_AUDIT: Topic = Topic {
    route: "^(audit|audit-hash|audit-verify)(?:/(?P<path>.+?))?$",
    synopsis: "List, enable and disable audit devices; hash a value as a device's records show it.",
    description: "GET /sys/audit lists the devices; PUT/POST /sys/audit/<path> enables one (type, description, options, local) when the configuration allows it; DELETE disables it (not one declared in the configuration); POST /sys/audit-hash/<path> {\"input\"} answers its HMAC under the device's key; POST /sys/audit-verify/<path> checks checkpoint signatures. All need sudo.",
};
const SYS_OTHER: Topic = Topic {
    route: "^.*$",
    synopsis: "The system backend: mounts, seal life cycle, health, response wrapping and custos's own endpoints.",
    description: "See docs/api.md for every sys/ endpoint custos answers.",
};

fn kv_v2_topic(relative: &str) -> Topic {
    let first = relative.split('/').next().unwrap_or_default();
    match first {
        "data" => KV_V2_DATA,
        "metadata" => KV_V2_METADATA,
        "delete" => KV_V2_DELETE,
        "undelete" => KV_V2_UNDELETE,
        "destroy" => KV_V2_DESTROY,
        "subkeys" => KV_V2_SUBKEYS,
        "config" => KV_V2_CONFIG,
        _ => KV_V2_OTHER,
    }
}

fn sys_topic(relative: &str) -> Topic {
    let first = relative.split('/').next().unwrap_or_default();
    match first {
        "mounts" => SYS_MOUNTS,
        "auth" => SYS_AUTH,
        "health" => SYS_HEALTH,
        "wrapping" => SYS_WRAPPING,
        "inventory" => SYS_INVENTORY,
        "audit" | "audit-hash" | "audit-verify" => SYS_AUDIT,
        "seal-status" | "seal" | "unseal" | "init" | "leader" | "key-status" | "rotate" => SYS_SEAL,
        _ => SYS_OTHER,
    }
}

/// Vault's answer for `topic` at `relative` (the path inside the mount).
fn answer(relative: &str, topic: &Topic) -> Map<String, Value> {
    let help = format!(
        "Request:        {relative}\nMatching Route: {}\n\n{}\n\n## DESCRIPTION\n\n{}\n",
        topic.route, topic.synopsis, topic.description
    );
    let openapi = json!({
        "openapi": "3.0.2",
        "info": {
            "title": "custos API",
            "description": "HTTP API of custos, compatible with HashiCorp Vault's.",
            "version": env!("CARGO_PKG_VERSION"),
        },
        "paths": {
            format!("/{relative}"): {
                "summary": topic.synopsis,
                "description": topic.description,
            },
        },
        "components": {"schemas": {}},
    });
    let mut map = Map::new();
    map.insert("help".into(), Value::String(help));
    map.insert("openapi".into(), openapi);
    map.insert("see_also".into(), Value::Null);
    map
}

impl Engine {
    /// `?help=1` on `path`: Vault's help answer. Needs a valid token; a path no mount serves is
    /// [`EngineError::NoRoute`], as in Vault.
    pub async fn help(
        &self,
        token: Option<&str>,
        connection: &crate::Connection,
        path: &str,
    ) -> Result<Map<String, Value>, EngineError> {
        self.authenticate(token, connection).await?;
        let unsealed = self.unsealed().ok_or(EngineError::Sealed)?;
        if let Some(relative) = path.strip_prefix("sys/") {
            return Ok(answer(relative, &sys_topic(relative)));
        }
        if let Some(rest) = path
            .strip_prefix("auth/")
            .filter(|rest| !rest.starts_with("token"))
        {
            let table = unsealed.auths();
            let entry = table
                .route(rest)
                .filter(|entry| entry.kind != "token")
                .ok_or_else(|| EngineError::NoRoute(path.to_owned()))?;
            let relative = rest.strip_prefix(entry.path.as_str()).unwrap_or_default();
            let first = relative.split('/').next().unwrap_or_default();
            let topic = match (entry.kind.as_str(), first) {
                ("userpass", "users") => USERPASS_USERS,
                ("userpass", "login") => USERPASS_LOGIN,
                ("userpass", _) => USERPASS_OTHER,
                _ => AUTH_OTHER,
            };
            return Ok(answer(relative, &topic));
        }
        let table = unsealed.mounts();
        let entry = table
            .route(path)
            .ok_or_else(|| EngineError::NoRoute(path.to_owned()))?;
        let relative = path.strip_prefix(entry.path.as_str()).unwrap_or_default();
        let topic = match (
            entry.kind.as_str(),
            entry.options.get("version").map(String::as_str),
        ) {
            ("kv", Some("2")) => kv_v2_topic(relative),
            _ => KV_V1,
        };
        tracing::debug!(mount = %entry.path, "help answered");
        Ok(answer(relative, &topic))
    }
}
