//! The change feed: what a node learns about writes committed by any node (itself included).
//!
//! A backend shared by several processes (PostgreSQL) produces these; a backend only one
//! process writes (SQLite, memory) has no feed. The binary fans every message out to whatever
//! mirrors storage in memory: the read cache ([`crate::CachedStorage::apply`]) and the engine's
//! tables. The backend-neutral shape lets the engine follow changes without knowing the backend.

use crate::Revision;

/// One message of the change feed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Invalidation {
    /// These keys changed, in the commit that took `revision` (`None` when the sender did not
    /// say, e.g. a node of an older version).
    Keys {
        keys: Vec<String>,
        revision: Option<Revision>,
    },
    /// Anything may have changed (the feed (re)connected, or a commit named too many keys): forget
    /// every copy and trust storage again from now on. `revision` is the commit's, when one
    /// commit caused it.
    All { revision: Option<Revision> },
    /// The feed is down: changes may be missed until the next [`Invalidation::All`], so no copy
    /// can be trusted meanwhile.
    Lost,
}

impl Invalidation {
    /// The revision this message reports as committed, if any.
    pub fn revision(&self) -> Option<Revision> {
        match self {
            Invalidation::Keys { revision, .. } | Invalidation::All { revision } => *revision,
            Invalidation::Lost => None,
        }
    }

    /// Whether this message may concern `key` (any key of an [`Invalidation::All`] or
    /// [`Invalidation::Lost`]).
    pub fn touches(&self, key: &str) -> bool {
        match self {
            Invalidation::Keys { keys, .. } => keys.iter().any(|changed| changed == key),
            Invalidation::All { .. } | Invalidation::Lost => true,
        }
    }

    /// Whether this message may concern a key starting with `prefix`.
    pub fn touches_prefix(&self, prefix: &str) -> bool {
        match self {
            Invalidation::Keys { keys, .. } => {
                keys.iter().any(|changed| changed.starts_with(prefix))
            }
            Invalidation::All { .. } | Invalidation::Lost => true,
        }
    }
}
