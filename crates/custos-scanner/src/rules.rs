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

mod gitleaks;

/// Rules, allowlists and edits a rule file brings, after any conversion.
pub(crate) struct Converted {
    pub(crate) rules: Vec<RuleSpec>,
    pub(crate) allowlists: Vec<AllowlistSpec>,
    /// Ids of rules already in the set to remove.
    pub(crate) disabled: Vec<String>,
    pub(crate) warnings: Vec<String>,
}

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
    /// The file looks like a gitleaks configuration (it has gitleaks-only keys) but does
    /// not follow gitleaks's format either.
    #[error("cannot parse {file} as a gitleaks configuration (it has the gitleaks key `{key}`)")]
    ParseGitleaks {
        /// Name of the rule file.
        file: String,
        /// A gitleaks-only key the file has.
        key: String,
        /// The TOML error, boxed to keep `RuleError` small.
        #[source]
        source: Box<toml::de::Error>,
    },
    /// A rule file could not be read.
    #[error("cannot read rules file {file}")]
    Read {
        /// Name of the rule file.
        file: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A gitleaks `[extend] path` could not be followed: no directory to resolve it in,
    /// too deep a chain, or an unreadable file.
    #[error("{file}: cannot extend {path}: {reason}")]
    Extend {
        /// Name of the rule file.
        file: String,
        /// The `path` it extends.
        path: String,
        /// Why it cannot be loaded.
        reason: String,
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

/// How the entries of one allowlist combine.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Condition {
    /// A finding is allowed when any entry matches it.
    #[default]
    Or,
    /// A finding is allowed when every kind of entry present matches it (for example the
    /// path matches one of `paths` and the secret one of `regexes`).
    And,
}

/// Allowlist entries of one rule or of the whole rule set.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllowlistSpec {
    /// How the entries combine; `or` by default.
    #[serde(default)]
    pub condition: Condition,
    /// Regexes on the file path: matching files are not checked by the rule.
    #[serde(default)]
    pub paths: Vec<String>,
    /// Regexes on the secret: a matching secret is not reported.
    #[serde(default)]
    pub regexes: Vec<String>,
    /// Regexes on the whole regex match: a match they find is not reported.
    #[serde(default)]
    pub match_regexes: Vec<String>,
    /// Regexes on the line (or lines) holding the match: a match on such a line is not
    /// reported.
    #[serde(default)]
    pub line_regexes: Vec<String>,
    /// Case-insensitive substrings: a secret containing one is not reported.
    #[serde(default)]
    pub stopwords: Vec<String>,
    /// Full commit ids: in git history scans, findings from these commits are not
    /// reported. Other scans have no commit, so these entries never match there.
    #[serde(default)]
    pub commits: Vec<String>,
}

impl AllowlistSpec {
    /// Whether the allowlist has no entries at all.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
            && self.regexes.is_empty()
            && self.match_regexes.is_empty()
            && self.line_regexes.is_empty()
            && self.stopwords.is_empty()
            && self.commits.is_empty()
    }
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
    /// Regex on the file path: the rule checks only files whose path matches.
    pub path: Option<String>,
    /// Rule-specific allowlist.
    #[serde(default)]
    pub allowlist: AllowlistSpec,
    /// More rule-specific allowlists; a finding any of them allows is not reported.
    #[serde(default)]
    pub allowlists: Vec<AllowlistSpec>,
    /// gitleaks rules without `secretGroup`: the secret is the first group that matched
    /// something, or the whole match. Not part of custos's format.
    #[serde(skip)]
    pub(crate) first_matched_group: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    version: Option<u32>,
    #[serde(default)]
    rules: Vec<RuleSpec>,
    #[serde(default)]
    allowlist: AllowlistSpec,
    #[serde(default)]
    allowlists: Vec<AllowlistSpec>,
}

/// How many `[extend] path` links a gitleaks configuration may chain, as in gitleaks.
const MAX_EXTEND_DEPTH: usize = 2;

/// An ordered set of rules plus the global allowlists, not yet compiled.
#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    pub(crate) rules: Vec<RuleSpec>,
    /// Global allowlists: `or` lists are merged into the first (a union of `or` lists is
    /// one `or` list); `and` lists are kept apart.
    pub(crate) allowlists: Vec<AllowlistSpec>,
    /// What loading had to ignore or approximate (gitleaks features custos lacks).
    warnings: Vec<String>,
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

    /// Adds the rules and allowlists of one TOML file: a custos rule file, or a gitleaks
    /// v8 configuration, which is converted (see [`RuleSet::warnings`] for what the
    /// conversion ignored). A rule whose id already exists replaces the earlier one in
    /// place, so users can retune a default rule.
    ///
    /// A gitleaks `[extend] path` cannot be followed from text alone and is an error here;
    /// [`RuleSet::add_toml_file`] follows it.
    ///
    /// # Errors
    /// [`RuleError`] when the file does not parse or a rule id is empty.
    pub fn add_toml(&mut self, file: &str, text: &str) -> Result<(), RuleError> {
        self.add_text(file, text, None, 0)
    }

    /// Reads and adds one rule file, like [`RuleSet::add_toml`], and follows a gitleaks
    /// `[extend] path` relative to the file's directory.
    ///
    /// # Errors
    /// [`RuleError`] when a file cannot be read or parsed.
    pub fn add_toml_file(&mut self, path: &std::path::Path) -> Result<(), RuleError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| RuleError::Read {
            file: file.clone(),
            source,
        })?;
        let base = path.parent().unwrap_or(std::path::Path::new(""));
        self.add_text(&file, &text, Some(base), 0)
    }

    pub(crate) fn add_text(
        &mut self,
        file: &str,
        text: &str,
        base: Option<&std::path::Path>,
        depth: usize,
    ) -> Result<(), RuleError> {
        let parsed: RuleFile = match toml::from_str(text) {
            Ok(parsed) => parsed,
            Err(source) => {
                // Only a file with gitleaks-only keys is read as gitleaks; any other
                // file gets the error of custos's own format.
                return match gitleaks::gitleaks_key(text) {
                    Some(key) => {
                        let config =
                            gitleaks::parse(text).map_err(|source| RuleError::ParseGitleaks {
                                file: file.to_owned(),
                                key: key.clone(),
                                source: Box::new(source),
                            })?;
                        if let Some(extended) = &config.extend.path {
                            self.add_extended(file, extended, base, depth)?;
                        }
                        let converted = gitleaks::convert(file, config, self)?;
                        self.merge(file, converted)
                    }
                    None => Err(RuleError::Parse {
                        file: file.to_owned(),
                        source,
                    }),
                };
            }
        };
        if let Some(version) = parsed.version
            && version != 1
        {
            return Err(RuleError::Version {
                file: file.to_owned(),
                version,
            });
        }
        let mut allowlists = vec![parsed.allowlist];
        allowlists.extend(parsed.allowlists);
        self.merge(
            file,
            Converted {
                rules: parsed.rules,
                allowlists,
                disabled: Vec::new(),
                warnings: Vec::new(),
            },
        )
    }

    /// Loads the file a gitleaks `[extend] path` names, before the extending file.
    fn add_extended(
        &mut self,
        file: &str,
        extended: &str,
        base: Option<&std::path::Path>,
        depth: usize,
    ) -> Result<(), RuleError> {
        let extend_error = |reason: String| RuleError::Extend {
            file: file.to_owned(),
            path: extended.to_owned(),
            reason,
        };
        let Some(base) = base else {
            return Err(extend_error(
                "no directory to resolve it in; pass that file with another --rules".to_owned(),
            ));
        };
        if depth >= MAX_EXTEND_DEPTH {
            return Err(extend_error(format!(
                "more than {MAX_EXTEND_DEPTH} levels of [extend] path"
            )));
        }
        let path = base.join(extended);
        let text =
            std::fs::read_to_string(&path).map_err(|error| extend_error(error.to_string()))?;
        let parent = path.parent().unwrap_or(std::path::Path::new(""));
        self.add_text(&path.display().to_string(), &text, Some(parent), depth + 1)
    }

    fn merge(&mut self, file: &str, converted: Converted) -> Result<(), RuleError> {
        for rule in converted.rules {
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
        self.rules
            .retain(|rule| !converted.disabled.contains(&rule.id));
        for allow in converted.allowlists {
            if allow.is_empty() {
                continue;
            }
            match self.allowlists.first_mut() {
                // Plain `or` lists of the secret, paths and stopwords merge into one.
                Some(first)
                    if allow.condition == Condition::Or && first.condition == Condition::Or =>
                {
                    first.paths.extend(allow.paths);
                    first.regexes.extend(allow.regexes);
                    first.match_regexes.extend(allow.match_regexes);
                    first.line_regexes.extend(allow.line_regexes);
                    first.stopwords.extend(allow.stopwords);
                    first.commits.extend(allow.commits);
                }
                _ => self.allowlists.push(allow),
            }
        }
        self.warnings.extend(converted.warnings);
        Ok(())
    }

    /// What loading ignored or approximated, one sentence each, naming the file and rule:
    /// gitleaks features custos cannot apply. The CLI prints them as warnings.
    #[must_use]
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The rules, in priority order.
    #[must_use]
    pub fn rules(&self) -> &[RuleSpec] {
        &self.rules
    }
}
