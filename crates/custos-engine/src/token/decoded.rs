//! Token entries as last decoded, by token hash and the storage revision they were read at.
//!
//! Every authenticated request reads its token's entry. The read itself stays (it is what says
//! whether the entry changed, was revoked or deleted, on this node or another), but when the
//! entry's revision is the one decoded last time, the entry is neither decrypted nor parsed
//! again. Revisions come from one store-wide counter, so an unchanged revision is an unchanged
//! entry; a missing entry drops what was kept. Bounded: a full shard is emptied.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use custos_storage::Revision;

use super::{Caller, TokenEntry};

const SHARDS: usize = 16;
/// Entries per shard before it is emptied (16,384 tokens in all).
const PER_SHARD: usize = 1024;

/// One decoded token: its entry and the caller it makes, as read at a revision.
#[derive(Clone)]
pub(crate) struct Decoded {
    pub(crate) revision: Revision,
    pub(crate) entry: Arc<TokenEntry>,
    pub(crate) caller: Arc<Caller>,
}

impl Decoded {
    pub(crate) fn new(revision: Revision, entry: TokenEntry) -> Decoded {
        let caller = Arc::new(Caller::from(entry.clone()));
        Decoded {
            revision,
            entry: Arc::new(entry),
            caller,
        }
    }
}

type Shard = HashMap<String, Decoded>;

/// The decoded entries of one unsealing.
pub(crate) struct DecodedTokens {
    shards: Vec<Mutex<Shard>>,
}

impl Default for DecodedTokens {
    fn default() -> Self {
        DecodedTokens {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
        }
    }
}

impl DecodedTokens {
    fn shard(&self, hash: &str) -> std::sync::MutexGuard<'_, Shard> {
        let index = hash.bytes().take(2).fold(0usize, |acc, byte| {
            acc.wrapping_mul(31).wrapping_add(usize::from(byte))
        });
        self.shards[index % SHARDS]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// What was decoded for this token hash, and at which revision.
    pub(crate) fn get(&self, hash: &str) -> Option<Decoded> {
        self.shard(hash).get(hash).cloned()
    }

    pub(crate) fn put(&self, hash: &str, decoded: Decoded) {
        let mut shard = self.shard(hash);
        if shard.len() >= PER_SHARD && !shard.contains_key(hash) {
            shard.clear();
        }
        shard.insert(hash.to_owned(), decoded);
    }

    pub(crate) fn remove(&self, hash: &str) {
        self.shard(hash).remove(hash);
    }
}
