//! Login lockout: failed logins are counted per source address and per (auth mount, login
//! subject), and too many within a window lock that key out for a while.
//!
//! Counting happens whether or not the user exists, and a locked key answers the same
//! [`EngineError::LoginLocked`] whatever the credentials, so the answer tells an attacker
//! nothing about which names are real. Counters live in memory on each node: with several
//! nodes an attacker gets at most the threshold per node, and a restart forgets them
//! (`docs/auth.md`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use crate::EngineError;

/// One limit: `threshold` failures within `window` lock the key for `duration`. A threshold of
/// 0 turns the limit off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LockoutPolicy {
    pub threshold: u32,
    pub window: Duration,
    pub duration: Duration,
}

/// The login lockout settings (`auth.lockout_*` in the configuration).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoginLockout {
    /// Per auth mount and login subject (user name, role id, certificate name).
    pub per_user: LockoutPolicy,
    /// Per source address, across every auth mount.
    pub per_address: LockoutPolicy,
}

impl Default for LoginLockout {
    fn default() -> Self {
        LoginLockout {
            per_user: LockoutPolicy {
                threshold: 5,
                window: Duration::from_secs(15 * 60),
                duration: Duration::from_secs(15 * 60),
            },
            per_address: LockoutPolicy {
                threshold: 20,
                window: Duration::from_secs(60),
                duration: Duration::from_secs(60),
            },
        }
    }
}

/// How many keys are remembered before expired ones are pruned; past twice this, new keys are
/// not counted (memory stays bounded when someone sprays random names from many addresses).
const MAX_KEYS: usize = 100_000;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Key {
    Subject { accessor: String, subject: String },
    Address(IpAddr),
}

#[derive(Clone, Copy, Debug)]
struct Counter {
    failures: u32,
    window_start: Timestamp,
    locked_until: Option<Timestamp>,
}

/// The counters of one node.
#[derive(Debug, Default)]
pub(crate) struct Lockout {
    counters: Mutex<HashMap<Key, Counter>>,
}

fn after(time: Timestamp, duration: Duration) -> Timestamp {
    let signed = SignedDuration::try_from(duration).unwrap_or(SignedDuration::MAX);
    time.checked_add(signed).unwrap_or(Timestamp::MAX)
}

/// What a login attempt is counted under.
pub(crate) struct Attempt<'a> {
    pub(crate) address: Option<IpAddr>,
    /// The auth mount's accessor.
    pub(crate) accessor: &'a str,
    pub(crate) subject: &'a str,
}

impl Attempt<'_> {
    fn keys<'p>(&self, policy: &'p LoginLockout) -> Vec<(Key, &'p LockoutPolicy)> {
        let mut keys = vec![(
            Key::Subject {
                accessor: self.accessor.to_owned(),
                subject: self.subject.to_owned(),
            },
            &policy.per_user,
        )];
        if let Some(address) = self.address {
            keys.push((Key::Address(address), &policy.per_address));
        }
        keys
    }
}

impl Lockout {
    fn counters(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Counter>> {
        // Counters are plain numbers: a panic elsewhere cannot leave them inconsistent.
        self.counters
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Refuses the attempt while any of its keys is locked out.
    pub(crate) fn check(
        &self,
        policy: &LoginLockout,
        now: Timestamp,
        attempt: &Attempt<'_>,
    ) -> Result<(), EngineError> {
        let counters = self.counters();
        let mut longest: Option<Timestamp> = None;
        for (key, limit) in attempt.keys(policy) {
            if limit.threshold == 0 {
                continue;
            }
            if let Some(until) = counters.get(&key).and_then(|counter| counter.locked_until)
                && until > now
            {
                longest = Some(longest.map_or(until, |longest| longest.max(until)));
            }
        }
        match longest {
            Some(until) => {
                let seconds = until.duration_since(now).as_secs_f64().ceil();
                Err(EngineError::LoginLocked {
                    retry_after_seconds: (seconds as u64).max(1),
                })
            }
            None => Ok(()),
        }
    }

    /// Counts a failed attempt against each of its keys.
    pub(crate) fn failure(&self, policy: &LoginLockout, now: Timestamp, attempt: &Attempt<'_>) {
        let mut counters = self.counters();
        for (key, limit) in attempt.keys(policy) {
            if limit.threshold == 0 {
                continue;
            }
            if !counters.contains_key(&key) && counters.len() >= MAX_KEYS {
                counters.retain(|_, counter| {
                    counter.locked_until.is_some_and(|until| until > now)
                        || after(counter.window_start, limit.window.max(limit.duration)) > now
                });
                if counters.len() >= 2 * MAX_KEYS {
                    tracing::warn!("login lockout table is full; a failed login was not counted");
                    continue;
                }
            }
            let counter = counters.entry(key).or_insert(Counter {
                failures: 0,
                window_start: now,
                locked_until: None,
            });
            let lock_over = counter.locked_until.is_some_and(|until| until <= now);
            if lock_over || after(counter.window_start, limit.window) <= now {
                *counter = Counter {
                    failures: 0,
                    window_start: now,
                    locked_until: None,
                };
            }
            counter.failures = counter.failures.saturating_add(1);
            if counter.failures >= limit.threshold && counter.locked_until.is_none() {
                counter.locked_until = Some(after(now, limit.duration));
            }
        }
    }

    /// A successful login forgets the failures of its subject (not of its address: one right
    /// password must not buy an address another round of guesses at other names).
    pub(crate) fn success(&self, attempt: &Attempt<'_>) {
        self.counters().remove(&Key::Subject {
            accessor: attempt.accessor.to_owned(),
            subject: attempt.subject.to_owned(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + seconds).expect("time")
    }

    #[test]
    fn the_threshold_locks_then_the_lock_expires() {
        let lockout = Lockout::default();
        let policy = LoginLockout::default();
        let attempt = Attempt {
            address: None,
            accessor: "auth_userpass_1",
            subject: "alice",
        };
        for second in 0..4 {
            lockout.failure(&policy, at(second), &attempt);
            assert!(lockout.check(&policy, at(second), &attempt).is_ok());
        }
        lockout.failure(&policy, at(4), &attempt);
        match lockout.check(&policy, at(5), &attempt) {
            Err(EngineError::LoginLocked {
                retry_after_seconds,
            }) => assert_eq!(retry_after_seconds, 15 * 60 - 1),
            other => panic!("expected a lockout, got {other:?}"),
        }
        assert!(lockout.check(&policy, at(4 + 15 * 60), &attempt).is_ok());
    }

    #[test]
    fn failures_outside_the_window_do_not_add_up() {
        let lockout = Lockout::default();
        let policy = LoginLockout::default();
        let attempt = Attempt {
            address: None,
            accessor: "a",
            subject: "bob",
        };
        for round in 0..10 {
            lockout.failure(&policy, at(round * 16 * 60), &attempt);
            assert!(
                lockout
                    .check(&policy, at(round * 16 * 60), &attempt)
                    .is_ok()
            );
        }
    }

    #[test]
    fn an_address_is_limited_across_subjects() {
        let lockout = Lockout::default();
        let policy = LoginLockout::default();
        let address: IpAddr = "192.0.2.7".parse().expect("address");
        for index in 0..20 {
            let subject = format!("user{index}");
            let attempt = Attempt {
                address: Some(address),
                accessor: "a",
                subject: &subject,
            };
            assert!(lockout.check(&policy, at(1), &attempt).is_ok());
            lockout.failure(&policy, at(1), &attempt);
        }
        let fresh = Attempt {
            address: Some(address),
            accessor: "a",
            subject: "someone-new",
        };
        assert!(lockout.check(&policy, at(2), &fresh).is_err());
        let elsewhere = Attempt {
            address: Some("192.0.2.8".parse().expect("address")),
            accessor: "a",
            subject: "someone-new",
        };
        assert!(lockout.check(&policy, at(2), &elsewhere).is_ok());
    }

    #[test]
    fn success_forgets_the_subject_and_a_zero_threshold_disables() {
        let lockout = Lockout::default();
        let policy = LoginLockout::default();
        let attempt = Attempt {
            address: None,
            accessor: "a",
            subject: "carol",
        };
        for _ in 0..4 {
            lockout.failure(&policy, at(0), &attempt);
        }
        lockout.success(&attempt);
        lockout.failure(&policy, at(1), &attempt);
        assert!(lockout.check(&policy, at(1), &attempt).is_ok());

        let off = LoginLockout {
            per_user: LockoutPolicy {
                threshold: 0,
                ..policy.per_user
            },
            ..policy
        };
        for _ in 0..50 {
            lockout.failure(&off, at(2), &attempt);
        }
        assert!(lockout.check(&off, at(2), &attempt).is_ok());
    }
}
