//! The audit device table and the devices' salts, behind the barrier.
//!
//! Devices enabled over the API are stored at [`AUDIT_TABLE_PATH`] as JSON, changed only with a
//! compare-and-swap on that key, and mirrored (`mirror::TABLES`), so another node on the same
//! storage opens and closes the same devices. Devices declared in the configuration file are
//! never stored: they come from the configuration at every unseal. A stored device with the
//! same path as a declared one is refused at unseal (as OpenBao does): the operator has to
//! choose one.
//!
//! Each device's salt (its HMAC key) is 32 random bytes at `audit/salt/<path>`, created the
//! first time the device opens (with a compare-and-swap, so two nodes agree on one) and kept
//! across restarts; disabling an API device deletes it in the same commit as the table change.
//!
//! A device that cannot be opened at unseal (a missing directory, a bad option) does not stop
//! the unseal: the error is logged and every request fails closed (503, "audit log
//! unavailable") until the device opens, which is retried as requests arrive. Refusing to
//! unseal would hide the problem behind a sealed server that answers nothing, not even
//! `sys/audit`, and an operator with a token could not disable a broken API device.

use std::sync::{Arc, RwLock};

use custos_storage::{Revision, Transaction};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::{AuditConfig, Broker, Device, DeviceSpec, Format};
use crate::{Barrier, EngineError, Unsealed};

/// Where the table of devices enabled over the API is stored.
pub(crate) const AUDIT_TABLE_PATH: &str = "core/audit";

/// Where each device's salt is stored, by path without its trailing slash.
const SALT_PREFIX: &str = "audit/salt/";

/// The length of a salt.
const SALT_LEN: usize = 32;

/// One device enabled over the API, as stored.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
struct StoredDevice {
    path: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    options: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    local: bool,
}

impl StoredDevice {
    fn spec(&self) -> DeviceSpec {
        DeviceSpec {
            path: self.path.clone(),
            kind: self.kind.clone(),
            description: self.description.clone(),
            options: self.options.clone(),
            local: self.local,
        }
    }
}

/// The stored table.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct AuditTable {
    version: u32,
    entries: Vec<StoredDevice>,
    /// The storage revision this copy was read or written at (`None`: never stored).
    #[serde(skip)]
    revision: Option<Revision>,
}

impl AuditTable {
    async fn load(barrier: &Barrier) -> Result<AuditTable, EngineError> {
        Ok(
            match barrier.get_table::<AuditTable>(AUDIT_TABLE_PATH).await? {
                Some((mut table, revision)) => {
                    table.revision = Some(revision);
                    table
                }
                None => AuditTable {
                    version: 1,
                    ..AuditTable::default()
                },
            },
        )
    }

    /// Writes the table if it is still as read, with `extra` in the same commit: `Ok(false)`
    /// when another writer changed it first.
    async fn store(&mut self, barrier: &Barrier, extra: Transaction) -> Result<bool, EngineError> {
        let stored = barrier
            .put_table_if_unchanged(AUDIT_TABLE_PATH, &*self, self.revision, extra)
            .await?;
        if stored.is_some() {
            self.revision = stored;
        }
        Ok(stored.is_some())
    }
}

fn salt_key(path: &str) -> String {
    format!("{SALT_PREFIX}{}", path.trim_end_matches('/'))
}

/// The device's salt, created the first time.
async fn salt(barrier: &Barrier, path: &str) -> Result<Zeroizing<Vec<u8>>, EngineError> {
    let key = salt_key(path);
    for _ in 0..3 {
        if let Some(plain) = barrier.get(&key).await? {
            if plain.value.len() != SALT_LEN {
                return Err(EngineError::Internal(format!(
                    "the salt of audit device {path} is corrupt"
                )));
            }
            return Ok(plain.value.clone());
        }
        let mut fresh = Zeroizing::new(vec![0u8; SALT_LEN]);
        custos_crypto::fill_random(&mut fresh)
            .map_err(|error| EngineError::Internal(format!("random: {error}")))?;
        let txn = Transaction::new()
            .require_absent(&key)
            .put(&key, fresh.to_vec());
        match barrier.commit(txn).await {
            Ok(_) => return Ok(fresh),
            // Another node made one first: use that.
            Err(EngineError::Conflict) => {}
            Err(error) => return Err(error),
        }
    }
    Err(EngineError::Conflict)
}

/// A path as devices are named: no leading slash, one trailing slash.
pub(crate) fn normalize(path: &str) -> Result<String, EngineError> {
    let trimmed = path.trim_matches('/');
    if trimmed.is_empty() {
        return Err(EngineError::InvalidRequest(
            "audit device path must be specified".into(),
        ));
    }
    crate::pipeline::validate_path(trimmed)?;
    Ok(format!("{trimmed}/"))
}

/// Whether two device paths collide (one is the other or nests in it), as Vault refuses.
fn collides(a: &str, b: &str) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

impl Broker {
    /// The devices of an unsealing: the declared ones, then the stored ones, each with its
    /// salt, opened. Fails only on storage trouble and on a stored device that has a declared
    /// one's path; a device that cannot be opened is logged and fails requests instead.
    pub(crate) async fn open(
        barrier: &Barrier,
        config: AuditConfig,
    ) -> Result<Broker, EngineError> {
        let stored = AuditTable::load(barrier).await?;
        let mut devices = Vec::new();
        for declared in &config.declared {
            let mut spec = declared.clone();
            spec.path = normalize(&spec.path)?;
            if stored.entries.iter().any(|entry| entry.path == spec.path) {
                return Err(EngineError::InvalidRequest(format!(
                    "audit device {} is declared in the configuration and also enabled through the API: remove it from the configuration, unseal, disable it with `DELETE sys/audit/{}`, then declare it again",
                    spec.path, spec.path
                )));
            }
            if devices
                .iter()
                .any(|device: &Arc<Device>| device.spec.path == spec.path)
            {
                return Err(EngineError::InvalidRequest(format!(
                    "audit device {} is declared twice in the configuration",
                    spec.path
                )));
            }
            let salt = salt(barrier, &spec.path).await?;
            devices.push(Arc::new(Device::new(
                spec,
                true,
                &salt,
                config.allow_log_raw,
            )));
        }
        for entry in &stored.entries {
            let salt = salt(barrier, &entry.path).await?;
            devices.push(Arc::new(Device::new(
                entry.spec(),
                false,
                &salt,
                config.allow_log_raw,
            )));
        }
        for device in &devices {
            // Logged by `open`; requests fail closed until the device opens.
            let _ = device.open(&*config.factory);
        }
        Ok(Broker {
            config,
            devices: RwLock::new(Arc::new(devices)),
            stored: RwLock::new(stored),
            changing: tokio::sync::Mutex::new(()),
        })
    }

    /// Closes every device (sealing, shutdown).
    pub(crate) async fn close_all(&self) {
        let devices = self.devices();
        for device in devices.iter() {
            device.close().await;
        }
    }

    /// Brings the API devices in line with the stored table (another node changed it):
    /// opens the new ones, closes the removed ones.
    async fn reload(&self, barrier: &Barrier) -> Result<(), EngineError> {
        let _changing = self.changing.lock().await;
        let table = AuditTable::load(barrier).await?;
        let unchanged = table.revision.is_some()
            && table.revision
                == self
                    .stored
                    .read()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .revision;
        if unchanged {
            return Ok(());
        }
        let current = self.devices();
        let mut devices: Vec<Arc<Device>> = current
            .iter()
            .filter(|device| device.declared)
            .cloned()
            .collect();
        for entry in &table.entries {
            if devices.iter().any(|device| device.spec.path == entry.path) {
                // A declared device has its path: refused at the next unseal; until then the
                // declared one is kept.
                tracing::error!(device = %entry.path, "an audit device enabled through the API has the path of one declared in the configuration");
                continue;
            }
            let spec = entry.spec();
            match current
                .iter()
                .find(|device| !device.declared && device.spec == spec)
            {
                Some(device) => devices.push(device.clone()),
                None => {
                    let salt = salt(barrier, &entry.path).await?;
                    let device = Device::new(spec, false, &salt, self.config.allow_log_raw);
                    let _ = device.open(&*self.config.factory);
                    devices.push(Arc::new(device));
                }
            }
        }
        for device in current.iter() {
            if !devices.iter().any(|kept| Arc::ptr_eq(kept, device)) {
                device.close().await;
            }
        }
        self.set_devices(devices);
        *self
            .stored
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = table;
        Ok(())
    }

    /// Enables a device over the API (`sys/audit/<path>`): opened first, then stored, so a
    /// device that cannot be opened is refused and never stored.
    pub(crate) async fn enable(
        &self,
        barrier: &Barrier,
        spec: DeviceSpec,
    ) -> Result<(), EngineError> {
        if !self.config.allow_api_creation {
            return Err(EngineError::InvalidRequest(
                "cannot enable audit device via API; use declarative, config-based audit device management instead".into(),
            ));
        }
        Format::parse(&spec.options, self.config.allow_log_raw)?;
        let _changing = self.changing.lock().await;
        for _ in 0..8 {
            let mut table = AuditTable::load(barrier).await?;
            let taken = self
                .devices()
                .iter()
                .filter(|device| device.declared)
                .map(|device| device.spec.path.clone())
                .chain(table.entries.iter().map(|entry| entry.path.clone()))
                .any(|path| collides(&path, &spec.path));
            if taken {
                return Err(EngineError::InvalidRequest("path already in use".into()));
            }
            let salt = salt(barrier, &spec.path).await?;
            let device = Device::new(spec.clone(), false, &salt, self.config.allow_log_raw);
            device.open(&*self.config.factory).map_err(|error| {
                EngineError::InvalidRequest(format!(
                    "cannot open audit device {}: {error}",
                    spec.path
                ))
            })?;
            table.entries.push(StoredDevice {
                path: spec.path.clone(),
                kind: spec.kind.clone(),
                description: spec.description.clone(),
                options: spec.options.clone(),
                local: spec.local,
            });
            if table.store(barrier, Transaction::new()).await? {
                let mut devices = self.devices().as_ref().clone();
                devices.push(Arc::new(device));
                self.set_devices(devices);
                *self
                    .stored
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = table;
                tracing::info!(device = %spec.path, kind = %spec.kind, "audit device enabled");
                return Ok(());
            }
            // Another node changed the table meanwhile: look again.
            device.close().await;
        }
        Err(EngineError::Conflict)
    }

    /// Disables a device enabled over the API: removed from the table and its salt deleted in
    /// one commit, then closed. A path with no device succeeds (as Vault); a declared device is
    /// refused.
    pub(crate) async fn disable(&self, barrier: &Barrier, path: &str) -> Result<(), EngineError> {
        let _changing = self.changing.lock().await;
        if self
            .devices()
            .iter()
            .any(|device| device.declared && device.spec.path == path)
        {
            return Err(EngineError::InvalidRequest(
                "cannot disable configuration-managed audit device".into(),
            ));
        }
        for _ in 0..8 {
            let mut table = AuditTable::load(barrier).await?;
            let before = table.entries.len();
            table.entries.retain(|entry| entry.path != path);
            let lost_race = table.entries.len() != before
                && !table
                    .store(barrier, Transaction::new().delete(salt_key(path)))
                    .await?;
            if lost_race {
                // Lost a race with another writer: look again.
                continue;
            }
            let current = self.devices();
            let (removed, kept): (Vec<_>, Vec<_>) = current
                .iter()
                .cloned()
                .partition(|device| !device.declared && device.spec.path == path);
            self.set_devices(kept);
            for device in removed {
                device.close().await;
                tracing::info!(device = %path, "audit device disabled");
            }
            *self
                .stored
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = table;
            return Ok(());
        }
        Err(EngineError::Conflict)
    }
}

/// Reloads the audit table from storage: another node may have changed it.
pub(crate) async fn reload(unsealed: &Unsealed) -> Result<(), EngineError> {
    unsealed.audit.reload(&unsealed.barrier).await
}
