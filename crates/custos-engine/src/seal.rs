//! Initialisation, unsealing and sealing: the life of the root key.
//!
//! At init a random root key seals a fresh keyring and is split into Shamir shares; only the
//! shares leave the process. Unsealing collects shares until the threshold is reached, combines
//! them, and opens the keyring: only then does a [`Barrier`] exist.

use custos_crypto::shamir::{self, Share};
use custos_crypto::{Keyring, RootKey};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::EngineError;

/// Where the seal configuration is stored, in the clear (it holds no secret).
pub(crate) const SEAL_CONFIG_KEY: &str = "seal/config";

/// The smallest and largest unseal key custos accepts, in bytes (Vault's bounds).
const MIN_KEY_LEN: usize = 16;
const MAX_KEY_LEN: usize = 33;
/// Our shares: a 32-byte root key plus the x-coordinate byte.
const SHARE_LEN: usize = 33;

/// How the root key was split, and the cluster's identity. Stored as JSON at `seal/config`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct SealConfig {
    pub(crate) version: u32,
    #[serde(rename = "type")]
    pub(crate) seal_type: String,
    pub(crate) secret_shares: u32,
    pub(crate) secret_threshold: u32,
    pub(crate) cluster_name: String,
    pub(crate) cluster_id: String,
}

impl SealConfig {
    pub(crate) fn decode(bytes: &[u8]) -> Result<SealConfig, EngineError> {
        let config: SealConfig = serde_json::from_slice(bytes).map_err(|error| {
            EngineError::Internal(format!("seal configuration is corrupt: {error}"))
        })?;
        if config.version != 1 {
            return Err(EngineError::Internal(format!(
                "seal configuration version {} is not supported by this build",
                config.version
            )));
        }
        if config.secret_threshold == 0 || config.secret_threshold > config.secret_shares {
            return Err(EngineError::Internal(
                "seal configuration is corrupt: bad threshold".into(),
            ));
        }
        Ok(config)
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        // Serialising a struct of strings and integers to JSON cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// Checks `secret_shares`/`secret_threshold` with Vault's rules and messages.
pub(crate) fn validate_split(shares: u32, threshold: u32) -> Result<(u8, u8), EngineError> {
    let invalid =
        |why: &str| EngineError::InvalidRequest(format!("invalid seal configuration: {why}"));
    if shares < 1 {
        return Err(invalid("shares must be at least one"));
    }
    if threshold < 1 {
        return Err(invalid("threshold must be at least one"));
    }
    // Vault's order (`SealConfig.Validate`), so doubly-invalid input gets Vault's message.
    if shares > 1 && threshold < 2 {
        return Err(invalid(
            "threshold must be greater than one for multiple shares",
        ));
    }
    if shares > 255 {
        return Err(invalid("shares must be less than 256"));
    }
    if threshold > 255 {
        return Err(invalid("threshold must be less than 256"));
    }
    if threshold > shares {
        return Err(invalid("threshold cannot be larger than shares"));
    }
    // Both fit: shares <= 255 and threshold <= shares.
    Ok((shares as u8, threshold as u8))
}

/// Material created by init, before it is written.
pub(crate) struct Genesis {
    pub(crate) root_key: RootKey,
    pub(crate) keyring: Keyring,
    pub(crate) shares: Vec<Share>,
}

pub(crate) fn genesis(shares: u8, threshold: u8, now_unix: i64) -> Result<Genesis, EngineError> {
    let internal = |what: &str, error: &dyn std::fmt::Display| {
        EngineError::Internal(format!("{what}: {error}"))
    };
    let root_key = RootKey::generate().map_err(|e| internal("generating root key", &e))?;
    let keyring = Keyring::generate(now_unix).map_err(|e| internal("generating keyring", &e))?;
    let shares = shamir::split(root_key.as_bytes(), shares, threshold)
        .map_err(|e| internal("splitting root key", &e))?;
    Ok(Genesis {
        root_key,
        keyring,
        shares,
    })
}

/// Parses one submitted unseal key (already decoded from hex/base64) into a share.
pub(crate) fn parse_unseal_key(key: &[u8]) -> Result<Share, EngineError> {
    if key.len() < MIN_KEY_LEN {
        return Err(EngineError::InvalidUnsealKey(format!(
            "invalid key: key is shorter than minimum {MIN_KEY_LEN} bytes"
        )));
    }
    if key.len() > MAX_KEY_LEN {
        return Err(EngineError::InvalidUnsealKey(format!(
            "invalid key: key is longer than maximum {MAX_KEY_LEN} bytes"
        )));
    }
    if key.len() != SHARE_LEN {
        return Err(EngineError::InvalidUnsealKey(format!(
            "invalid key: unseal keys are {SHARE_LEN} bytes, this one is {}",
            key.len()
        )));
    }
    Share::from_bytes(key)
        .map_err(|error| EngineError::InvalidUnsealKey(format!("invalid key: {error}")))
}

/// Shares collected so far while sealed.
#[derive(Default)]
pub(crate) struct Pending {
    pub(crate) shares: Vec<Share>,
    pub(crate) nonce: String,
}

impl Pending {
    /// Adds a share; a share already submitted is ignored, as Vault does.
    pub(crate) fn add(&mut self, share: Share) -> Result<(), EngineError> {
        if self
            .shares
            .iter()
            .any(|seen| custos_crypto::constant_time_eq(seen.as_bytes(), share.as_bytes()))
        {
            return Ok(());
        }
        if self.shares.is_empty() {
            self.nonce = custos_crypto::random_uuid()
                .map_err(|error| EngineError::Internal(format!("random: {error}")))?;
        }
        self.shares.push(share);
        Ok(())
    }

    pub(crate) fn progress(&self) -> u32 {
        u32::try_from(self.shares.len()).unwrap_or(u32::MAX)
    }

    pub(crate) fn clear(&mut self) {
        self.shares.clear();
        self.nonce.clear();
    }

    /// Combines the collected shares into a root key candidate.
    pub(crate) fn combine(&self) -> Result<RootKey, EngineError> {
        let bytes: Zeroizing<Vec<u8>> = shamir::combine(&self.shares)
            .map_err(|error| EngineError::InvalidUnsealKey(format!("invalid key: {error}")))?;
        RootKey::from_bytes(&bytes)
            .map_err(|error| EngineError::InvalidUnsealKey(format!("invalid key: {error}")))
    }
}
