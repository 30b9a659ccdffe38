//! Node-local copies of stored tables, kept in step with every other node on the same storage.
//!
//! The engine keeps some stored records in memory because every request needs them (the mount
//! table, the keyring; later policies, auth methods, token roles, audit devices...). With several
//! nodes on one PostgreSQL, another node may change such a record at any time. This module is the
//! one mechanism that keeps those copies honest:
//!
//! - each mirrored table registers, in [`TABLES`], the storage key prefix it mirrors and a
//!   function that reloads it from storage (adding a table is one line there);
//! - the binary feeds the backend's change feed to [`Engine::apply_invalidation`]: a change under
//!   a table's prefix marks that table stale, and the next request reloads it before it runs
//!   ([`Engine::refresh_tables`]);
//! - while the feed is down ([`Invalidation::Lost`]) nothing can be trusted, so every request
//!   reloads every table first; when the feed is back ([`Invalidation::All`]) every table is
//!   marked stale once;
//! - [`Engine::reconcile`] (called periodically by the binary) marks every table stale, to catch
//!   anything a notification could have missed;
//! - the highest revision the feed has reported is the node's applied index, which read-your-writes
//!   requests wait for ([`Engine::wait_for_index`]).
//!
//! A node without a feed (SQLite, memory: this process makes every write) never marks anything
//! stale, so the per-request check is two atomic loads per table.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use custos_storage::{Invalidation, Revision, Transaction};

use crate::{Engine, EngineError, Unsealed, audit, auth, barrier, mounts, policy};

type Reload =
    for<'a> fn(&'a Unsealed) -> Pin<Box<dyn Future<Output = Result<(), EngineError>> + Send + 'a>>;

/// One in-memory table that mirrors stored keys.
pub(crate) struct MirroredTable {
    /// For logs.
    pub(crate) name: &'static str,
    /// Every storage key the table is built from starts with this (a single key is its own prefix).
    pub(crate) prefix: &'static str,
    /// Reads the table from storage and installs it (never replacing a newer copy by an older one).
    pub(crate) reload: Reload,
}

fn reload_mounts(
    unsealed: &Unsealed,
) -> Pin<Box<dyn Future<Output = Result<(), EngineError>> + Send + '_>> {
    Box::pin(mounts::reload(unsealed))
}

fn reload_auths(
    unsealed: &Unsealed,
) -> Pin<Box<dyn Future<Output = Result<(), EngineError>> + Send + '_>> {
    Box::pin(auth::reload(unsealed))
}

fn reload_keyring(
    unsealed: &Unsealed,
) -> Pin<Box<dyn Future<Output = Result<(), EngineError>> + Send + '_>> {
    Box::pin(unsealed.barrier.reload_keyring())
}

fn reload_policies(
    unsealed: &Unsealed,
) -> Pin<Box<dyn Future<Output = Result<(), EngineError>> + Send + '_>> {
    Box::pin(policy::reload(unsealed))
}

fn reload_audit(
    unsealed: &Unsealed,
) -> Pin<Box<dyn Future<Output = Result<(), EngineError>> + Send + '_>> {
    Box::pin(audit::reload(unsealed))
}

/// Every mirrored table. Later tables (policies, auth methods, ...) add one line here.
pub(crate) const TABLES: &[MirroredTable] = &[
    MirroredTable {
        name: "mounts",
        prefix: mounts::MOUNTS_PATH,
        reload: reload_mounts,
    },
    MirroredTable {
        name: "auth methods",
        prefix: auth::AUTH_PATH,
        reload: reload_auths,
    },
    MirroredTable {
        name: "keyring",
        prefix: barrier::KEYRING_KEY,
        reload: reload_keyring,
    },
    MirroredTable {
        name: "policies",
        prefix: policy::POLICY_PREFIX,
        reload: reload_policies,
    },
    MirroredTable {
        name: "audit devices",
        prefix: audit::AUDIT_TABLE_PATH,
        reload: reload_audit,
    },
];

/// Freshness of one table of one unsealed engine.
#[derive(Default)]
struct TableState {
    /// Bumped by every change that may concern the table.
    wanted: AtomicU64,
    /// The `wanted` value the installed copy reflects (it was read from storage after that bump).
    loaded: AtomicU64,
    /// One reload at a time; requests that need the table wait for it.
    reloading: tokio::sync::Mutex<()>,
}

/// The freshness of every table in [`TABLES`], for one unsealing (the copies themselves live in
/// [`Unsealed`]).
pub(crate) struct Mirrors {
    tables: Vec<TableState>,
}

impl Default for Mirrors {
    /// Every table starts stale: a change notified while the engine was unsealing (after it read
    /// the table, before it could be marked) is then still picked up by the first request.
    fn default() -> Self {
        Mirrors {
            tables: TABLES
                .iter()
                .map(|_| TableState {
                    wanted: AtomicU64::new(1),
                    ..TableState::default()
                })
                .collect(),
        }
    }
}

impl Mirrors {
    /// Marks every table that `invalidation` may concern as stale.
    fn mark(&self, invalidation: &Invalidation) {
        for (table, state) in TABLES.iter().zip(&self.tables) {
            if invalidation.touches_prefix(table.prefix) {
                state.wanted.fetch_add(1, Ordering::AcqRel);
            }
        }
    }

    fn mark_all(&self) {
        for state in &self.tables {
            state.wanted.fetch_add(1, Ordering::AcqRel);
        }
    }
}

/// What the engine knows of the change feed.
pub(crate) struct Follower {
    /// A feed is attached: other processes write the same storage.
    attached: AtomicBool,
    /// The feed is up: between an `All` and a `Lost`.
    connected: AtomicBool,
    /// The highest revision the feed has reported (the node's applied index).
    applied: tokio::sync::watch::Sender<u64>,
}

impl Default for Follower {
    fn default() -> Self {
        Follower {
            attached: AtomicBool::new(false),
            connected: AtomicBool::new(false),
            applied: tokio::sync::watch::Sender::new(0),
        }
    }
}

impl Follower {
    /// Attached but not connected: changes may be missed right now.
    pub(crate) fn deaf(&self) -> bool {
        self.attached.load(Ordering::Acquire) && !self.connected.load(Ordering::Acquire)
    }

    fn advance(&self, revision: Revision) {
        self.applied.send_if_modified(|applied| {
            if revision.0 > *applied {
                *applied = revision.0;
                true
            } else {
                false
            }
        });
    }
}

impl Engine {
    /// Declares that storage is shared with other nodes and that their changes will arrive
    /// through [`Engine::apply_invalidation`]. Until the feed reports that it is connected
    /// ([`Invalidation::All`]), every request reloads every mirrored table.
    pub fn attach_change_feed(&self) {
        self.inner.follower.attached.store(true, Ordering::Release);
    }

    /// Applies one message of the change feed (the binary calls this after the read cache
    /// applied it, so reloads read fresh data).
    pub async fn apply_invalidation(&self, invalidation: &Invalidation) {
        let follower = &self.inner.follower;
        let unsealed = self.unsealed();
        match invalidation {
            Invalidation::Lost => {
                // The listener reports every failed reconnection; say it once.
                if follower.connected.swap(false, Ordering::AcqRel) {
                    tracing::warn!(
                        "change feed lost: every request reloads the mirrored tables until it is back"
                    );
                }
            }
            Invalidation::All { revision } => {
                // Stale first, then trusted: no request may use a copy from the deaf period.
                if let Some(unsealed) = &unsealed {
                    unsealed.mirrors.mark_all();
                    crate::apikeys::apply_invalidation(unsealed, invalidation).await;
                }
                if !follower.connected.swap(true, Ordering::AcqRel) {
                    tracing::info!("change feed connected");
                }
                let current = match revision {
                    Some(revision) => Some(*revision),
                    // Everything up to now is in storage, and every table will be read again.
                    None => match self.inner.storage.commit(Transaction::new()).await {
                        Ok(revision) => Some(revision),
                        Err(error) => {
                            tracing::warn!(%error, "cannot read the current storage revision");
                            None
                        }
                    },
                };
                if let Some(revision) = current {
                    follower.advance(revision);
                }
            }
            Invalidation::Keys { revision, .. } => {
                if let Some(unsealed) = &unsealed {
                    unsealed.mirrors.mark(invalidation);
                    // Keyed indexes apply each change at once (a revoked API key must stop
                    // working everywhere within a second).
                    crate::apikeys::apply_invalidation(unsealed, invalidation).await;
                }
                // After marking: a request that waited for this revision finds the tables stale.
                if let Some(revision) = revision {
                    follower.advance(*revision);
                }
            }
        }
    }

    /// Marks every mirrored table stale, so the next request reloads it: the periodic reconcile
    /// that catches anything the feed missed.
    pub fn reconcile(&self) {
        if let Some(unsealed) = self.unsealed() {
            unsealed.mirrors.mark_all();
        }
    }

    /// Whether other nodes share this node's storage (a change feed is attached).
    pub fn is_clustered(&self) -> bool {
        self.inner.follower.attached.load(Ordering::Acquire)
    }

    /// Whether the change feed is attached and currently down (every request then reloads the
    /// mirrored tables and reads storage directly).
    pub fn is_change_feed_lost(&self) -> bool {
        self.inner.follower.deaf()
    }

    /// The cluster id, once known (it is read with the seal configuration).
    pub fn cluster_id(&self) -> Option<String> {
        self.inner
            .seal_config
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
            .map(|config| config.cluster_id.clone())
    }

    /// The highest storage revision this node has seen committed through the change feed (0
    /// before the first).
    pub fn applied_index(&self) -> Revision {
        Revision(*self.inner.follower.applied.borrow())
    }

    /// Waits, at most `timeout`, until this node has applied every change up to `revision`
    /// (read-your-writes across nodes). A node without a feed makes every write itself, and a
    /// node whose feed is down reads storage directly, so neither waits.
    pub async fn wait_for_index(
        &self,
        revision: Revision,
        timeout: Duration,
    ) -> Result<(), EngineError> {
        let follower = &self.inner.follower;
        if !follower.attached.load(Ordering::Acquire) || follower.deaf() {
            return Ok(());
        }
        let mut applied = follower.applied.subscribe();
        let reached =
            tokio::time::timeout(timeout, applied.wait_for(|applied| *applied >= revision.0)).await;
        match reached {
            Ok(Ok(_)) => Ok(()),
            // The feed may have gone down meanwhile: then storage is read directly.
            _ if follower.deaf() => Ok(()),
            _ => Err(EngineError::IndexNotReached),
        }
    }

    /// Brings every stale mirrored table up to date; every request runs this first.
    pub(crate) async fn refresh_tables(&self, unsealed: &Unsealed) -> Result<(), EngineError> {
        // A read-your-writes request cannot trust what was notified either (see `index`).
        let deaf = self.inner.follower.deaf() || crate::index::reading_fresh();
        for (table, state) in TABLES.iter().zip(&unsealed.mirrors.tables) {
            if deaf {
                // Nothing tells us about changes: read storage every time.
                (table.reload)(unsealed).await?;
                continue;
            }
            let wanted = state.wanted.load(Ordering::Acquire);
            if state.loaded.load(Ordering::Acquire) >= wanted {
                continue;
            }
            let _reloading = state.reloading.lock().await;
            if state.loaded.load(Ordering::Acquire) >= wanted {
                continue;
            }
            (table.reload)(unsealed).await?;
            state.loaded.fetch_max(wanted, Ordering::AcqRel);
            tracing::debug!(table = table.name, "mirrored table reloaded");
        }
        Ok(())
    }
}
