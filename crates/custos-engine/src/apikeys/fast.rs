//! The verify lane: `POST <mount>/verify` served without the general pipeline's detours, because
//! verification is the request a gateway makes on every call it receives.
//!
//! It makes the same decisions in the same order as [`Engine::handle`] (the token, the caller's
//! policies with the request's address, body and the clock, the key), but skips what a verify
//! never needs: the existence check, the token store's and `sys/`'s routes, response wrapping,
//! and the building of a generic answer (the answer is written as JSON bytes at once). Whatever it
//! cannot serve exactly as the pipeline would, it hands back (`Ok(None)`) for
//! [`Engine::handle`]: audit devices are enabled (every request must then be recorded with its
//! answer), the token is refused or has limited uses (the refusal is audited, the use is
//! spent), the path is not an `apikeys` mount's `verify`.

use serde_json::{Map, Value};

use super::{ApiKeysMount, KIND, verify};
use crate::logical::{MountStorage, Operation};
use crate::{Connection, Engine, EngineError};

impl Engine {
    /// Serves `POST <path>` when it is an `apikeys` mount's `verify`: `Ok(Some(data))` is the
    /// answer's `data` object as JSON; `Ok(None)`: serve the request with [`Engine::handle`].
    pub async fn verify_api_key(
        &self,
        path: &str,
        token: Option<&str>,
        data: Option<&Map<String, Value>>,
        connection: &Connection,
    ) -> Result<Option<Vec<u8>>, EngineError> {
        let unsealed = self.unsealed().ok_or(EngineError::Sealed)?;
        if !self.inner.default_audit_sink || !unsealed.audit.devices().is_empty() {
            return Ok(None);
        }
        self.refresh_tables(&unsealed).await?;
        let uuid = {
            let table = unsealed.mounts();
            let Some(entry) = table.route(path) else {
                return Ok(None);
            };
            if entry.kind != KIND || path.strip_prefix(entry.path.as_str()) != Some("verify") {
                return Ok(None);
            }
            entry.uuid.clone()
        };
        let Some(decoded) = self
            .check_token_shared(&unsealed, token, connection)
            .await?
        else {
            return Ok(None);
        };
        if decoded.entry.num_uses > 0 {
            return Ok(None);
        }
        let now = self.now();
        self.inner
            .inventory
            .record_token(&decoded.entry, connection, now.as_second());
        let caller = &decoded.caller;
        crate::pipeline::validate_path(path)?;
        let facts = custos_policy::Facts {
            remote_addr: connection.remote_addr,
            mfa: caller.mfa,
            now,
            parameters: data,
            wrap_ttl: None,
        };
        self.authorize_with(&unsealed, caller, path, Operation::Update, &facts)?;
        let mount = unsealed
            .mount_states
            .get_or_insert_with(&uuid, ApiKeysMount::default)?;
        let index = match mount.built() {
            Some(index) => index,
            None => {
                let storage = MountStorage::new(unsealed.barrier.clone(), &uuid);
                mount.index(&storage).await?
            }
        };
        let feed_lost = self.inner.follower.deaf() || crate::index::reading_fresh();
        let verdict = super::verify_with(&index, data, feed_lost, now.as_millisecond()).await?;
        Ok(Some(verify::answer_json(&verdict)))
    }
}
