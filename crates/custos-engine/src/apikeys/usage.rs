//! Writing behind: what verifications spent (uses left, last use) and counted (analytics) goes
//! to storage in batches, never on the verify path.
//!
//! Uses are counted down in memory and written as a delta (stored count minus what this node
//! spent since its last flush), under a compare-and-swap, so several nodes spending the same
//! key add up. What a crash can lose is what was spent since the last flush: those uses can be
//! spent again after a restart (the over-spend bound, `docs/apikeys.md`). A clean shutdown or a
//! seal flushes first, so it loses nothing.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use custos_storage::Transaction;

use super::model::{self, HourRecord, UsageRecord, decode, encode};
use super::state::{CODES, Code, Entry, HourCounts, Index, lock};
use crate::EngineError;

/// Verification counts by (keyring, hour), then key id (`""`: no key) and code.
pub(crate) type RingHours = BTreeMap<(String, i64), BTreeMap<String, [u64; CODES]>>;

/// How many times a compare-and-swap write is retried against other writers.
const CAS_ATTEMPTS: usize = 8;

/// What one flush wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Flushed {
    pub(crate) usage_records: usize,
    pub(crate) analytics_records: usize,
}

/// A key's usage as read for one flush.
struct Snapshot {
    entry: Arc<Entry>,
    id: String,
    keyring: String,
    base: Option<i64>,
    epoch: u64,
    remaining: Option<i64>,
    in_flight: u64,
    refilled: bool,
    last_refill_at: i64,
    last_used_at: Option<i64>,
    write_usage: bool,
    counts: Vec<HourCounts>,
}

/// `analytics/<ring>/<hour>`, the hour zero-padded so that keys sort by time; `-` holds what
/// belongs to no keyring (ring names start with a letter or digit).
pub(crate) fn hour_key(keyring: &str, hour: i64) -> String {
    let ring = if keyring.is_empty() { "-" } else { keyring };
    format!("{}{ring}/{:012}", model::ANALYTICS, hour.max(0))
}

pub(crate) fn ring_prefix(keyring: &str) -> String {
    let ring = if keyring.is_empty() { "-" } else { keyring };
    format!("{}{ring}/", model::ANALYTICS)
}

impl Index {
    /// Writes every key's pending usage and every pending count. On a storage failure what
    /// could not be written is kept for the next flush.
    pub(crate) async fn flush(&self) -> Result<Flushed, EngineError> {
        let dirty: Vec<Arc<Entry>> = std::mem::take(&mut *lock(&self.dirty));
        let mut snapshots = Vec::with_capacity(dirty.len());
        for entry in dirty {
            // Cleared first: a verification from now on queues the key again.
            entry.dirty.store(false, Ordering::Release);
            let mut live = entry.lock();
            let record = &live.compiled.record;
            let snapshot = Snapshot {
                entry: entry.clone(),
                id: entry.id.clone(),
                keyring: record.keyring.clone(),
                base: record.remaining,
                epoch: live.epoch,
                remaining: live.remaining,
                in_flight: live.unflushed,
                refilled: live.refilled,
                last_refill_at: live.last_refill_at,
                last_used_at: live.last_used_at,
                write_usage: !live.removed && (live.unflushed > 0 || live.refilled || live.used),
                counts: std::mem::take(&mut live.counts),
            };
            live.used = false;
            drop(live);
            snapshots.push(snapshot);
        }
        let mut flushed = Flushed::default();
        let mut first_error = None;
        for snapshot in &snapshots {
            if !snapshot.write_usage {
                continue;
            }
            match self.write_usage(snapshot).await {
                Ok(()) => flushed.usage_records += 1,
                Err(error) => {
                    let mut live = snapshot.entry.lock();
                    live.used = true;
                    drop(live);
                    self.mark_dirty(&snapshot.entry);
                    first_error.get_or_insert(error);
                }
            }
        }
        // Counts by keyring and hour: one record each.
        // Counts by keyring and hour: one record each; what the last flush could not write
        // first.
        let mut hours: RingHours = std::mem::take(&mut *lock(&self.unwritten_hours));
        for snapshot in &snapshots {
            for (hour, codes) in &snapshot.counts {
                add_codes(
                    hours
                        .entry((snapshot.keyring.clone(), *hour))
                        .or_default()
                        .entry(snapshot.id.clone())
                        .or_insert([0; CODES]),
                    codes,
                );
            }
        }
        for shard in &self.unattributed {
            let drained = std::mem::take(&mut *lock(shard));
            for (keyring, counts) in drained {
                for (hour, codes) in counts {
                    add_codes(
                        hours
                            .entry((keyring.clone(), hour))
                            .or_default()
                            .entry(String::new())
                            .or_insert([0; CODES]),
                        &codes,
                    );
                }
            }
        }
        for ((keyring, hour), keys) in hours {
            match self.merge_hour(&keyring, hour, &keys).await {
                Ok(()) => flushed.analytics_records += 1,
                Err(error) => {
                    // Kept, key by key, for the next flush.
                    let mut unwritten = lock(&self.unwritten_hours);
                    let stored = unwritten.entry((keyring, hour)).or_default();
                    for (id, codes) in keys {
                        add_codes(stored.entry(id).or_insert([0; CODES]), &codes);
                    }
                    first_error.get_or_insert(error);
                }
            }
        }
        match first_error {
            Some(error) => Err(error),
            None => Ok(flushed),
        }
    }

    async fn write_usage(&self, snapshot: &Snapshot) -> Result<(), EngineError> {
        let key = format!("{}{}", model::USAGE, snapshot.id);
        for _ in 0..CAS_ATTEMPTS {
            let current = self.storage.get(&key).await?;
            let (stored, revision) = match &current {
                Some(plain) => (
                    decode::<UsageRecord>(&plain.value, "API key usage")?,
                    Some(plain.revision),
                ),
                None => (UsageRecord::default(), None),
            };
            let same_epoch = current.is_some() && stored.epoch == snapshot.epoch;
            let base = if same_epoch {
                stored.remaining
            } else {
                snapshot.base
            };
            let stored_refill = if same_epoch { stored.last_refill_at } else { 0 };
            let (remaining, last_refill_at) =
                if snapshot.refilled && snapshot.last_refill_at > stored_refill {
                    // A refill here: the count starts again from the refill.
                    (snapshot.remaining, snapshot.last_refill_at)
                } else {
                    let spent = i64::try_from(snapshot.in_flight).unwrap_or(i64::MAX);
                    (
                        base.map(|base| base.saturating_sub(spent).max(0)),
                        stored_refill.max(snapshot.last_refill_at),
                    )
                };
            let next = UsageRecord {
                epoch: snapshot.epoch,
                remaining,
                last_refill_at,
                last_used_at: stored.last_used_at.max(snapshot.last_used_at),
            };
            let txn = Transaction::new()
                .require_unchanged(key.clone(), revision)
                .put(key.clone(), encode(&next)?);
            match self.storage.commit(txn).await {
                Ok(_) => {
                    let mut live = snapshot.entry.lock();
                    if live.epoch == snapshot.epoch {
                        live.unflushed = live.unflushed.saturating_sub(snapshot.in_flight);
                        if snapshot.refilled && live.last_refill_at == snapshot.last_refill_at {
                            live.refilled = false;
                        }
                    }
                    return Ok(());
                }
                Err(EngineError::Conflict) => continue,
                Err(error) => return Err(error),
            }
        }
        Err(EngineError::Conflict)
    }

    /// Adds counts to the stored record of one keyring and hour.
    async fn merge_hour(
        &self,
        keyring: &str,
        hour: i64,
        keys: &BTreeMap<String, [u64; CODES]>,
    ) -> Result<(), EngineError> {
        let key = hour_key(keyring, hour);
        for _ in 0..CAS_ATTEMPTS {
            let current = self.storage.get(&key).await?;
            let (mut record, revision) = match &current {
                Some(plain) => (
                    decode::<HourRecord>(&plain.value, "API key analytics")?,
                    Some(plain.revision),
                ),
                None => (HourRecord::default(), None),
            };
            for (id, codes) in keys {
                let stored = record.keys.entry(id.clone()).or_default();
                for code in Code::ALL {
                    let n = codes[code.index()];
                    if n > 0 {
                        *stored.entry(code.as_str().to_owned()).or_insert(0) += n;
                    }
                }
            }
            let txn = Transaction::new()
                .require_unchanged(key.clone(), revision)
                .put(key.clone(), encode(&record)?);
            match self.storage.commit(txn).await {
                Ok(_) => return Ok(()),
                Err(EngineError::Conflict) => continue,
                Err(error) => return Err(error),
            }
        }
        Err(EngineError::Conflict)
    }

    /// Deletes hourly analytics older than the retention, for every keyring (and the
    /// unattributed ones).
    pub(crate) async fn expire_analytics(&self, now: i64) -> Result<usize, EngineError> {
        let retention = i64::try_from(self.config().analytics_retention).unwrap_or(i64::MAX);
        let cutoff = now.saturating_sub(retention);
        // The rings found in storage, not the keyrings: counts of a deleted keyring's keys
        // may be written after its deletion, and they expire too.
        let rings = self.rings_with_analytics().await?;
        let mut deleted = 0;
        for ring in rings {
            let prefix = ring_prefix(&ring);
            loop {
                let page = self.storage.list(&prefix, None, 500).await?;
                let old: Vec<&String> = page
                    .keys
                    .iter()
                    .filter(|key| {
                        key.strip_prefix(&prefix)
                            .and_then(|hour| hour.parse::<i64>().ok())
                            .is_some_and(|hour| hour + 3600 <= cutoff)
                    })
                    .collect();
                if old.is_empty() {
                    break;
                }
                let mut txn = Transaction::new();
                for key in &old {
                    txn = txn.delete(key.as_str());
                }
                self.storage.commit(txn).await?;
                deleted += old.len();
                // Keys are in time order: a page not all old ends the expired ones.
                if old.len() < page.keys.len() || page.next_after.is_none() {
                    break;
                }
            }
        }
        Ok(deleted)
    }
}

impl Index {
    /// The ring names under which analytics are stored (`-` for no keyring), one listing of
    /// one key per ring.
    async fn rings_with_analytics(&self) -> Result<Vec<String>, EngineError> {
        let mut rings = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = self
                .storage
                .list(model::ANALYTICS, after.as_deref(), 1)
                .await?;
            let Some(first) = page.keys.first() else {
                break;
            };
            let Some((ring, _hour)) = first
                .strip_prefix(model::ANALYTICS)
                .and_then(|rest| rest.rsplit_once('/'))
            else {
                break;
            };
            // Past the ring's last hour (hours are 12 digits): the next ring's first record.
            after = Some(format!("{}999999999999", ring_prefix(ring)));
            rings.push(ring.to_owned());
            if page.next_after.is_none() {
                break;
            }
        }
        Ok(rings)
    }
}

fn add_codes(into: &mut [u64; CODES], from: &[u64; CODES]) {
    for (into, from) in into.iter_mut().zip(from) {
        *into = into.saturating_add(*from);
    }
}
