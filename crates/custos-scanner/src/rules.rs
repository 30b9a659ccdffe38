//! Rules as data: the TOML format, the embedded defaults and their validation.
//!
//! A rule file looks like this (see `docs/scanner.md` for every field):
//! ```toml
//! version = 1
//! [[rules]]
//! id = "acme-token"
//! description = "Acme API token"
//! regex = '''\b(acme_[A-Za-z0-9]{32})\b'''
//! keywords = ["acme_"]
//! entropy = 3.0
//! ```

use serde::Deserialize;

/// The rule files compiled into the binary, in priority order: when two rules match the
/// same bytes, the earlier one wins.
const DEFAULT_RULE_FILES: &[(&str, &str)] = &[
    ("cloud.toml", include_str!("../rules/cloud.toml")),
    ("code.toml", include_str!("../rules/code.toml")),
    ("saas.toml", include_str!("../rules/saas.toml")),
    ("keys.toml", include_str!("../rules/keys.toml")),
    ("generic.toml", include_str!("../rules/generic.toml")),
];

/// Why a rule file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    /// The file is not valid TOML or does not follow the rule format.
    #[error("cannot parse rules file {file}")]
    Parse {
        /// Name of the rule file.
        file: String,
        /// The TOML error.
        #[source]
        source: toml::de::Error,
    },
    /// The file declares a format version this build does not know.
    #[error("{file}: unsupported rule format version {version} (expected 1)")]
    Version {
        /// Name of the rule file.
        file: String,
        /// The declared version.
        version: u32,
    },
    /// A rule is invalid: bad regex, unknown validation kind, duplicate id, ...
    #[error("rule {id}: {message}")]
    Invalid {
        /// The rule id.
        id: String,
        /// What is wrong.
        message: String,
    },
}

/// How a candidate's checksum is verified, for formats that carry one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Validation {
    /// custos API keys and tokens, checked with `custos_core::ApiKey::parse`.
    Custos,
    /// GitHub `gh?_` tokens: the last 6 base62 characters are the CRC-32 of the 30 before.
    Github,
}

/// Allowlist entries of one rule or of the whole rule set.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllowlistSpec {
    /// Regexes on the file path: matching files are not checked by the rule.
    #[serde(default)]
    pub paths: Vec<String>,
    /// Regexes on the secret: a matching secret is not reported.
    #[serde(default)]
    pub regexes: Vec<String>,
    /// Case-insensitive substrings: a secret containing one is not reported.
    #[serde(default)]
    pub stopwords: Vec<String>,
}

/// One rule as written in TOML.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// Stable identifier, used in output, baselines and fingerprints.
    pub id: String,
    /// Human-readable description.
    pub description: String,
    /// Regex (Rust `regex` syntax, matched on bytes, ASCII classes).
    pub regex: String,
    /// Case-insensitive literals; the regex runs only on buffers containing one of them.
    /// An empty list means the regex runs on every buffer, which costs speed.
    #[serde(default)]
    pub keywords: Vec<String>,
    /// Capture group holding the secret; defaults to 1 if the regex has a group, else 0.
    pub secret_group: Option<usize>,
    /// Minimum Shannon entropy of the secret in bits per byte.
    #[serde(default)]
    pub entropy: f64,
    /// Checksum validation; a candidate that fails it is not reported.
    pub validate: Option<Validation>,
    /// Every match begins with one of the keywords, so the regex runs anchored at each
    /// keyword hit instead of scanning the buffer (much faster for frequent keywords).
    #[serde(default)]
    pub starts_with_keyword: bool,
    /// Marks generic rules: they yield to specific rules on overlapping matches and get
    /// extra checks against identifiers and placeholders.
    #[serde(default)]
    pub generic: bool,
    /// Rule-specific allowlist.
    #[serde(default)]
    pub allowlist: AllowlistSpec,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    version: Option<u32>,
    #[serde(default)]
    rules: Vec<RuleSpec>,
    #[serde(default)]
    allowlist: AllowlistSpec,
}

/// An ordered set of rules plus the global allowlist, not yet compiled.
#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    pub(crate) rules: Vec<RuleSpec>,
    pub(crate) allowlist: AllowlistSpec,
}

impl RuleSet {
    /// The rules compiled into custos.
    ///
    /// # Errors
    /// Only if the embedded files are broken, which the test suite rules out.
    pub fn defaults() -> Result<Self, RuleError> {
        let mut set = Self::default();
        for (file, text) in DEFAULT_RULE_FILES {
            set.add_toml(file, text)?;
        }
        Ok(set)
    }

    /// Adds the rules and allowlist of one TOML file. A rule whose id already exists
    /// replaces the earlier one in place, so users can retune a default rule.
    ///
    /// # Errors
    /// [`RuleError`] when the file does not parse or a rule id is empty.
    pub fn add_toml(&mut self, file: &str, text: &str) -> Result<(), RuleError> {
        let parsed: RuleFile = toml::from_str(text).map_err(|source| RuleError::Parse {
            file: file.to_owned(),
            source,
        })?;
        if let Some(version) = parsed.version
            && version != 1
        {
            return Err(RuleError::Version {
                file: file.to_owned(),
                version,
            });
        }
        for rule in parsed.rules {
            if rule.id.is_empty() {
                return Err(RuleError::Invalid {
                    id: String::new(),
                    message: format!("empty id in {file}"),
                });
            }
            match self
                .rules
                .iter_mut()
                .find(|existing| existing.id == rule.id)
            {
                Some(existing) => *existing = rule,
                None => self.rules.push(rule),
            }
        }
        let allow = parsed.allowlist;
        self.allowlist.paths.extend(allow.paths);
        self.allowlist.regexes.extend(allow.regexes);
        self.allowlist.stopwords.extend(allow.stopwords);
        Ok(())
    }

    /// The rules, in priority order.
    #[must_use]
    pub fn rules(&self) -> &[RuleSpec] {
        &self.rules
    }
}
