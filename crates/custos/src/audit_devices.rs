//! The audit devices this build offers the engine: `file` devices from `custos-audit` (a file,
//! or standard output). The engine formats and hashes records and decides fail-closed; the
//! device chains, batches, syncs and rotates.

use std::collections::BTreeMap;
use std::sync::Arc;

use custos_engine::{AuditDevice, AuditDeviceFactory, CheckpointSigner, DeviceSpec};

/// Opens `file` devices; refuses other types with the list of what is offered.
#[derive(Debug, Default)]
pub(crate) struct Devices;

impl AuditDeviceFactory for Devices {
    fn open(
        &self,
        spec: &DeviceSpec,
        options: &BTreeMap<String, String>,
        signer: CheckpointSigner,
    ) -> Result<Arc<dyn AuditDevice>, String> {
        if spec.kind != "file" {
            return Err(format!(
                "audit device type {:?} is not offered (this build has \"file\")",
                spec.kind
            ));
        }
        let options = custos_audit::FileOptions::from_options(&spec.path, options)
            .map_err(|error| error.to_string())?;
        let device = custos_audit::FileDevice::open(&spec.path, options, Some(signer))
            .map_err(|error| error.to_string())?;
        Ok(Arc::new(File(device)))
    }
}

/// A `custos-audit` file device as the engine sees it.
struct File(custos_audit::FileDevice);

#[async_trait::async_trait]
impl AuditDevice for File {
    async fn append(&self, record: Vec<u8>) -> Result<(), String> {
        self.0
            .append(record)
            .await
            .map_err(|error| error.to_string())
    }

    fn reopen(&self) -> Result<(), String> {
        self.0.reopen().map_err(|error| error.to_string())
    }

    async fn close(&self) {
        self.0.close().await;
    }

    fn head(&self) -> Option<(u64, String)> {
        self.0.head()
    }
}
