//! Audit files: the file device behind `sys/audit` devices of type `file`, and the tools that
//! read its output back (`custos audit verify` and `custos audit query`).
//!
//! The engine formats each audit record as a JSON object and hands it to a device; this crate
//! decides nothing about what is audited. A [`FileDevice`] adds two fields to every record, its
//! sequence number (`seq`) and the SHA-256 of the line before it (`prev_hash`), so the lines form a
//! hash chain, and it writes signed checkpoint records now and then and whenever it closes a file.
//! Writes go through one thread per device that commits whatever is queued in one write (group
//! commit) and syncs as the device's fsync policy says.
//!
//! [`verify`] checks a chain over one or more files and names the first problem (an altered,
//! removed, inserted or reordered record, a truncated file, a malformed line); [`query`] filters
//! records while it verifies. Both read line by line and never load a whole file.
//!
//! **Boundary:** only the binary depends on this crate; it knows nothing of the engine.

mod chain;
mod device;
mod options;
pub mod query;
pub mod verify;

pub use chain::{CHECKPOINT_PAYLOAD_VERSION, CheckpointReason, GENESIS_HASH, checkpoint_payload};
pub use device::{FileDevice, Signer};
pub use options::{FileOptions, FsyncPolicy, Output};

/// What went wrong in an audit device.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// An option is unknown or its value cannot be used.
    #[error("audit device {device}: {message}")]
    Invalid {
        /// The device's path (`file/`).
        device: String,
        /// What is wrong, naming the option.
        message: String,
    },
    /// The record handed to the device is not a one-line JSON object.
    #[error("audit record is not a one-line JSON object")]
    BadRecord,
    /// The file could not be opened, written, synced or renamed.
    #[error("audit device {device}: {action} {path}: {source}")]
    Io {
        /// The device's path.
        device: String,
        /// What the device was doing (`open`, `write`, ...).
        action: &'static str,
        /// The file.
        path: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// An existing file does not end in a line of a custos audit chain, so the device cannot
    /// continue it.
    #[error("audit device {device}: {path} does not end with a custos audit record: {message}")]
    NotAChain {
        /// The device's path.
        device: String,
        /// The file.
        path: String,
        /// Why its last line was refused.
        message: String,
    },
    /// The device is closed (or its writer thread stopped).
    #[error("audit device {device} is closed")]
    Closed {
        /// The device's path.
        device: String,
    },
}
