//! Baselines: the findings a team has already triaged, stored by fingerprint so that only
//! new findings fail a build. Fingerprints ignore line numbers, so moving code around keeps
//! a baselined finding suppressed; changing the secret or its file makes it new.
//!
//! The file holds SHA-256 fingerprints, never secrets. (A low-entropy password could be
//! guessed from its fingerprint by brute force, like from any unsalted hash; keep baselines
//! next to the code they describe, not in public places.)

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::finding::Finding;

/// Why a baseline file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum BaselineError {
    /// The file is not a custos baseline.
    #[error("invalid baseline: {0}")]
    Parse(#[from] serde_json::Error),
    /// The file declares a version this build does not know.
    #[error("unsupported baseline version {0} (expected 1)")]
    Version(u32),
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct BaselineFile {
    version: u32,
    findings: Vec<BaselineEntry>,
}

#[derive(Debug, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(deny_unknown_fields)]
struct BaselineEntry {
    fingerprint: String,
    rule_id: String,
    path: String,
}

/// A set of known findings.
#[derive(Debug, Default, Clone)]
pub struct Baseline {
    fingerprints: BTreeSet<String>,
}

impl Baseline {
    /// Parses a baseline file.
    ///
    /// # Errors
    /// [`BaselineError`] when the JSON is not a version-1 baseline.
    pub fn parse(text: &str) -> Result<Self, BaselineError> {
        let file: BaselineFile = serde_json::from_str(text)?;
        if file.version != 1 {
            return Err(BaselineError::Version(file.version));
        }
        Ok(Self {
            fingerprints: file
                .findings
                .into_iter()
                .map(|entry| entry.fingerprint)
                .collect(),
        })
    }

    /// Serializes the baseline of `findings` (sorted, one entry per fingerprint).
    #[must_use]
    pub fn render(findings: &[Finding]) -> String {
        let entries: BTreeSet<BaselineEntry> = findings
            .iter()
            .map(|finding| BaselineEntry {
                fingerprint: finding.fingerprint.clone(),
                rule_id: finding.rule_id.to_string(),
                path: finding.path.clone(),
            })
            .collect();
        let file = BaselineFile {
            version: 1,
            findings: entries.into_iter().collect(),
        };
        let mut text = serde_json::to_string_pretty(&file).unwrap_or_default();
        text.push('\n');
        text
    }

    /// Whether `finding` is already known.
    #[must_use]
    pub fn contains(&self, finding: &Finding) -> bool {
        self.fingerprints.contains(&finding.fingerprint)
    }

    /// Removes known findings and returns how many were removed.
    pub fn filter(&self, findings: &mut Vec<Finding>) -> usize {
        let before = findings.len();
        findings.retain(|finding| !self.contains(finding));
        before - findings.len()
    }

    /// Number of fingerprints.
    #[must_use]
    pub fn len(&self) -> usize {
        self.fingerprints.len()
    }

    /// Whether the baseline is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.fingerprints.is_empty()
    }
}
