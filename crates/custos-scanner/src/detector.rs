//! The `Detector`: compiled rules and the matching pipeline for one buffer.
//!
//! Pipeline: keyword prefilter (one Aho-Corasick pass over the buffer) → regexes of the
//! triggered rules only → per-candidate checks (entropy, allowlists, placeholders, checksum)
//! → overlap resolution (specific rules beat generic ones, earlier rules beat later ones).

use std::ops::Range;
use std::sync::Arc;

use regex::bytes::{CaptureLocations, Regex, RegexBuilder, RegexSet, RegexSetBuilder};

use crate::checks::{generic_value_plausible, shannon_entropy, validate};
use crate::rules::{AllowlistSpec, Condition, RuleError, RuleSet, Validation};

mod prefilter;

use prefilter::KeywordPrefilter;

/// Bytes of each keyword used by the Aho-Corasick prefilter.
const MAX_KEYWORD_PREFIX: usize = 6;

/// Above this many keyword hits in one buffer, a rule's regex runs over the whole buffer
/// instead of in windows around the hits.
const MAX_WINDOWED_HITS: usize = 64;

/// How far a window end is pushed forward to finish the word it cuts, so that `\b` and `$`
/// do not see a boundary the buffer does not have.
const WORD_SLACK: usize = 256;

/// Byte ranges of `data` where a match containing one of `hits` can lie: a match of at most
/// `max_len` bytes that contains a hit starts no earlier than `hit.end - max_len` and ends no
/// later than `hit.start + max_len`. Windows are merged and extended past the word they cut.
fn windows(data: &[u8], hits: &[Range<usize>], max_len: usize) -> Vec<Range<usize>> {
    let mut windows: Vec<Range<usize>> = Vec::with_capacity(hits.len());
    for hit in hits {
        let start = hit.end.saturating_sub(max_len);
        let mut end = hit.start.saturating_add(max_len).min(data.len());
        let limit = end.saturating_add(WORD_SLACK).min(data.len());
        while end < limit
            && !data[end].is_ascii_whitespace()
            && !b"\"'`,;()[]{}<>".contains(&data[end])
        {
            end += 1;
        }
        if end < limit {
            // Include the delimiter itself, which some regexes consume as a terminator.
            end += 1;
        } else {
            end = data.len().min(end.max(limit));
        }
        match windows.last_mut() {
            Some(last) if start <= last.end => last.end = last.end.max(end),
            _ => windows.push(start..end),
        }
    }
    windows
}

/// Upper bound on detections of one rule in one buffer, so a pathological file (a million
/// JWTs in a log) cannot exhaust memory; the scanner reports the cap when it is hit.
const MAX_DETECTIONS_PER_RULE: usize = 1000;

/// Size limit for one compiled regex (the `regex` crate's default is 10 MiB).
const REGEX_SIZE_LIMIT: usize = 32 * 1024 * 1024;

/// One match that passed every check.
#[derive(Debug, Clone, PartialEq)]
pub struct Detection {
    /// Index of the rule in the detector.
    pub rule: usize,
    /// Byte range of the secret in the buffer.
    pub secret: Range<usize>,
    /// Byte range of the whole regex match.
    pub whole: Range<usize>,
    /// Whether a checksum proved the secret genuine.
    pub validated: bool,
    /// Shannon entropy of the secret, bits per byte.
    pub entropy: f64,
}

/// What an allowlist is checked against, for one candidate.
struct Candidate<'a> {
    path: &'a str,
    secret: &'a [u8],
    /// The secret in ASCII lowercase, for stopwords.
    lowercase: &'a [u8],
    /// The buffer and the range of the whole match in it. The line is looked up only when
    /// a line regex needs it: searching back to the line start costs time on long lines.
    data: &'a [u8],
    whole: Range<usize>,
    /// The commit the buffer came from, in git history scans.
    commit: Option<&'a str>,
}

impl Candidate<'_> {
    fn line(&self) -> &[u8] {
        let start = memchr::memrchr(b'\n', &self.data[..self.whole.start]).map_or(0, |nl| nl + 1);
        let end = memchr::memchr(b'\n', &self.data[self.whole.end..])
            .map_or(self.data.len(), |nl| self.whole.end + nl);
        &self.data[start..end]
    }
}

struct CompiledAllowlist {
    condition: Condition,
    paths: Option<RegexSet>,
    regexes: Option<RegexSet>,
    match_regexes: Option<RegexSet>,
    line_regexes: Option<RegexSet>,
    stopwords: Vec<Vec<u8>>,
    /// Commit ids in ASCII lowercase.
    commits: Vec<String>,
}

impl CompiledAllowlist {
    fn new(id: &str, spec: &AllowlistSpec) -> Result<Self, RuleError> {
        let set = |patterns: &[String]| -> Result<Option<RegexSet>, RuleError> {
            if patterns.is_empty() {
                return Ok(None);
            }
            RegexSetBuilder::new(patterns)
                .unicode(false)
                .size_limit(REGEX_SIZE_LIMIT)
                .build()
                .map(Some)
                .map_err(|error| RuleError::Invalid {
                    id: id.to_owned(),
                    message: format!("allowlist regex: {error}"),
                })
        };
        Ok(Self {
            condition: spec.condition,
            paths: set(&spec.paths)?,
            regexes: set(&spec.regexes)?,
            match_regexes: set(&spec.match_regexes)?,
            line_regexes: set(&spec.line_regexes)?,
            stopwords: spec
                .stopwords
                .iter()
                .filter(|word| !word.is_empty())
                .map(|word| word.to_ascii_lowercase().into_bytes())
                .collect(),
            commits: spec
                .commits
                .iter()
                .map(|commit| commit.trim().to_ascii_lowercase())
                .collect(),
        })
    }

    /// Whether the list has entries about the content (anything but paths).
    fn checks_content(&self) -> bool {
        self.regexes.is_some()
            || self.match_regexes.is_some()
            || self.line_regexes.is_some()
            || !self.stopwords.is_empty()
            || !self.commits.is_empty()
    }

    fn path_matches(&self, path: &str) -> Option<bool> {
        self.paths.as_ref().map(|set| set.is_match(path.as_bytes()))
    }

    /// Whether the list excludes the whole file, whatever the content.
    fn allows_path(&self, path: &str) -> bool {
        match self.condition {
            Condition::Or => self.path_matches(path) == Some(true),
            Condition::And => !self.checks_content() && self.path_matches(path) == Some(true),
        }
    }

    /// Whether the list allows this candidate.
    fn allows(&self, candidate: &Candidate<'_>) -> bool {
        // Each check is `None` when the list has no such entries. They run lazily, cheap
        // ones first, and stop as soon as the answer is known.
        let checks: [&dyn Fn() -> Option<bool>; 6] = [
            &|| {
                (!self.commits.is_empty()).then(|| {
                    candidate.commit.is_some_and(|commit| {
                        self.commits
                            .iter()
                            .any(|allowed| allowed.eq_ignore_ascii_case(commit))
                    })
                })
            },
            &|| {
                (!self.stopwords.is_empty()).then(|| {
                    self.stopwords
                        .iter()
                        .any(|word| memchr::memmem::find(candidate.lowercase, word).is_some())
                })
            },
            &|| {
                self.regexes
                    .as_ref()
                    .map(|set| set.is_match(candidate.secret))
            },
            &|| {
                self.match_regexes
                    .as_ref()
                    .map(|set| set.is_match(&candidate.data[candidate.whole.clone()]))
            },
            &|| {
                self.line_regexes
                    .as_ref()
                    .map(|set| set.is_match(candidate.line()))
            },
            &|| self.path_matches(candidate.path),
        ];
        match self.condition {
            Condition::Or => checks.iter().any(|check| check() == Some(true)),
            Condition::And => {
                let mut any = false;
                for check in checks {
                    match check() {
                        Some(false) => return false,
                        Some(true) => any = true,
                        None => {}
                    }
                }
                any
            }
        }
    }
}

struct CompiledRule {
    /// `^(?:regex)`, for rules whose matches start at a keyword hit.
    anchored: Option<Regex>,
    /// Longest possible match, when the regex bounds it: the regex then runs only in
    /// windows around keyword hits instead of over the whole buffer.
    max_len: Option<usize>,
    id: Arc<str>,
    description: Arc<str>,
    regex: Regex,
    group: usize,
    entropy: f64,
    validate: Option<Validation>,
    generic: bool,
    /// gitleaks semantics: the secret is the first group that matched something.
    first_matched_group: bool,
    /// Regex on the file path the rule is restricted to.
    path: Option<Regex>,
    allow: Vec<CompiledAllowlist>,
}

impl CompiledRule {
    /// The span of the secret in a match.
    fn secret_of(&self, locations: &CaptureLocations) -> Option<(usize, usize)> {
        if self.first_matched_group {
            return (1..locations.len())
                .filter_map(|group| locations.get(group))
                .find(|(start, end)| start < end)
                .or_else(|| locations.get(0));
        }
        locations.get(self.group)
    }
}

/// A rule's keyword, as found through its first [`MAX_KEYWORD_PREFIX`] bytes.
#[derive(PartialEq)]
struct KeywordRule {
    rule: usize,
    /// The lowercase bytes of the keyword after the prefix.
    rest: Box<[u8]>,
}

impl KeywordRule {
    /// The range of the whole keyword, if it occurs where its prefix was found.
    fn occurrence(&self, data: &[u8], prefix: &Range<usize>) -> Option<Range<usize>> {
        let end = prefix.end.checked_add(self.rest.len())?;
        data.get(prefix.end..end)?
            .eq_ignore_ascii_case(&self.rest)
            .then_some(prefix.start..end)
    }
}

/// Compiled rules, shared read-only by all scanning threads.
pub struct Detector {
    rules: Vec<CompiledRule>,
    prefilter: Option<KeywordPrefilter>,
    /// Aho-Corasick pattern id → the keywords starting with that prefix.
    pattern_rules: Vec<Vec<KeywordRule>>,
    /// Rules without keywords: their regexes run on every buffer.
    unfiltered: Vec<usize>,
    global: Vec<CompiledAllowlist>,
}

impl std::fmt::Debug for Detector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Detector")
            .field("rules", &self.rules.len())
            .field("keywords", &self.pattern_rules.len())
            .finish_non_exhaustive()
    }
}

impl Detector {
    /// Compiles a rule set once; the result is cheap to share across threads.
    ///
    /// # Errors
    /// [`RuleError::Invalid`] for a bad regex, a secret group the regex lacks, or a
    /// duplicate keyword list entry that is empty.
    pub fn new(set: &RuleSet) -> Result<Self, RuleError> {
        let mut rules = Vec::with_capacity(set.rules.len());
        let mut keywords: Vec<Vec<u8>> = Vec::new();
        let mut pattern_rules: Vec<Vec<KeywordRule>> = Vec::new();
        let mut unfiltered = Vec::new();
        for (index, spec) in set.rules.iter().enumerate() {
            let invalid = |message: String| RuleError::Invalid {
                id: spec.id.clone(),
                message,
            };
            let regex = RegexBuilder::new(&spec.regex)
                .unicode(false)
                .size_limit(REGEX_SIZE_LIMIT)
                .build()
                .map_err(|error| invalid(format!("regex: {error}")))?;
            let groups = regex.captures_len() - 1;
            let group = spec.secret_group.unwrap_or(if groups >= 1 { 1 } else { 0 });
            if group > groups {
                return Err(invalid(format!(
                    "secret_group {group} but the regex has {groups} groups"
                )));
            }
            if !(0.0..=8.0).contains(&spec.entropy) {
                return Err(invalid("entropy must be between 0 and 8".to_owned()));
            }
            if spec.keywords.is_empty() {
                unfiltered.push(index);
            }
            for keyword in &spec.keywords {
                if keyword.is_empty() {
                    return Err(invalid("empty keyword".to_owned()));
                }
                // Only a keyword's first bytes go into the automaton: a smaller automaton
                // stays in cache and runs several times faster. A hit on the prefix is then
                // checked against the rest of the keyword, so a long keyword stays as
                // selective as it reads ("sha256~" does not fire on "sha256(").
                let mut lower = keyword.to_ascii_lowercase().into_bytes();
                let rest = lower.split_off(lower.len().min(MAX_KEYWORD_PREFIX));
                let keyword_rule = KeywordRule {
                    rule: index,
                    rest: rest.into_boxed_slice(),
                };
                match keywords.iter().position(|known| *known == lower) {
                    Some(pattern) => {
                        if !pattern_rules[pattern].contains(&keyword_rule) {
                            pattern_rules[pattern].push(keyword_rule);
                        }
                    }
                    None => {
                        keywords.push(lower);
                        pattern_rules.push(vec![keyword_rule]);
                    }
                }
            }
            let max_len = regex_syntax::ParserBuilder::new()
                .unicode(false)
                .utf8(false)
                .build()
                .parse(&spec.regex)
                .ok()
                .and_then(|hir| hir.properties().maximum_len())
                .filter(|_| !spec.keywords.is_empty());
            let anchored = if spec.starts_with_keyword {
                if spec.keywords.is_empty() || max_len.is_none() {
                    return Err(invalid(
                        "starts_with_keyword needs keywords and a bounded regex".to_owned(),
                    ));
                }
                Some(
                    RegexBuilder::new(&format!("^(?:{})", spec.regex))
                        .unicode(false)
                        .size_limit(REGEX_SIZE_LIMIT)
                        .build()
                        .map_err(|error| invalid(format!("regex: {error}")))?,
                )
            } else {
                None
            };
            rules.push(CompiledRule {
                anchored,
                max_len,
                id: Arc::from(spec.id.as_str()),
                description: Arc::from(spec.description.as_str()),
                regex,
                group,
                entropy: spec.entropy,
                validate: spec.validate,
                generic: spec.generic,
                first_matched_group: spec.first_matched_group,
                path: spec
                    .path
                    .as_ref()
                    .map(|path| {
                        RegexBuilder::new(path)
                            .unicode(false)
                            .size_limit(REGEX_SIZE_LIMIT)
                            .build()
                            .map_err(|error| invalid(format!("path regex: {error}")))
                    })
                    .transpose()?,
                allow: std::iter::once(&spec.allowlist)
                    .chain(&spec.allowlists)
                    .filter(|allow| !allow.is_empty())
                    .map(|allow| CompiledAllowlist::new(&spec.id, allow))
                    .collect::<Result<_, _>>()?,
            });
        }
        let prefilter = if keywords.is_empty() {
            None
        } else {
            Some(
                KeywordPrefilter::new(&keywords).map_err(|message| RuleError::Invalid {
                    id: "<keywords>".to_owned(),
                    message,
                })?,
            )
        };
        Ok(Self {
            rules,
            prefilter,
            pattern_rules,
            unfiltered,
            global: set
                .allowlists
                .iter()
                .filter(|allow| !allow.is_empty())
                .map(|allow| CompiledAllowlist::new("<global allowlist>", allow))
                .collect::<Result<_, _>>()?,
        })
    }

    /// Number of rules.
    #[must_use]
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether the detector has no rules.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Id of rule `index`.
    #[must_use]
    pub fn rule_id(&self, index: usize) -> &Arc<str> {
        &self.rules[index].id
    }

    /// Description of rule `index`.
    #[must_use]
    pub fn rule_description(&self, index: usize) -> &Arc<str> {
        &self.rules[index].description
    }

    /// Whether the global allowlist excludes this path entirely.
    #[must_use]
    pub fn path_allowed(&self, path: &str) -> bool {
        self.global.iter().any(|allow| allow.allows_path(path))
    }

    /// Finds secrets in `data`, which came from `path` (used for path allowlists only).
    /// Results are sorted by position; overlapping matches are resolved.
    #[must_use]
    pub fn detect(&self, data: &[u8], path: &str) -> Vec<Detection> {
        self.detect_in_commit(data, path, None)
    }

    /// Like [`Detector::detect`], for lines a commit added: allowlists naming the commit
    /// apply.
    #[must_use]
    pub fn detect_in_commit(
        &self,
        data: &[u8],
        path: &str,
        commit: Option<&str>,
    ) -> Vec<Detection> {
        let mut triggered = vec![false; self.rules.len()];
        // Keyword hits per rule, while few enough to be worth windowing.
        let mut hits: Vec<Vec<Range<usize>>> = vec![Vec::new(); self.rules.len()];
        for &index in &self.unfiltered {
            triggered[index] = true;
        }
        if let Some(prefilter) = &self.prefilter {
            prefilter.find(data, |pattern, prefix| {
                for keyword in &self.pattern_rules[pattern] {
                    let Some(range) = keyword.occurrence(data, &prefix) else {
                        continue;
                    };
                    let index = keyword.rule;
                    triggered[index] = true;
                    let rule_hits = &mut hits[index];
                    // Two keywords of one rule can both start here; the shorter one gives the
                    // wider window.
                    if let Some(last) = rule_hits
                        .last_mut()
                        .filter(|last| last.start == range.start)
                    {
                        last.end = last.end.min(range.end);
                        continue;
                    }
                    if rule_hits.len() <= MAX_WINDOWED_HITS || self.rules[index].anchored.is_some()
                    {
                        rule_hits.push(range);
                    }
                }
            });
        }
        let mut detections = Vec::new();
        let mut vetoes = Vec::new();
        for (index, rule) in self.rules.iter().enumerate() {
            if !triggered[index]
                || rule
                    .path
                    .as_ref()
                    .is_some_and(|only| !only.is_match(path.as_bytes()))
                || rule.allow.iter().any(|allow| allow.allows_path(path))
            {
                continue;
            }
            // This rule's detections are `detections[first..]`: rules run one after another.
            let first = detections.len();
            let mut detections = Collected {
                all: &mut detections,
                first,
            };
            if let (Some(anchored), Some(max_len)) = (&rule.anchored, rule.max_len) {
                self.run_anchored(
                    index,
                    rule,
                    anchored,
                    Input { data, path, commit },
                    &hits[index],
                    max_len,
                    &mut detections,
                    &mut vetoes,
                );
                continue;
            }
            // Where the regex runs: around custos key candidates for the keyword-less custos
            // rule, around the keyword hits when they are few, else over the whole buffer.
            let ranges =
                if rule.validate == Some(Validation::Custos) && self.unfiltered.contains(&index) {
                    custos_key_windows(data)
                } else {
                    match rule.max_len {
                        Some(max_len) if hits[index].len() <= MAX_WINDOWED_HITS => {
                            windows(data, &hits[index], max_len)
                        }
                        _ => std::iter::once(0..data.len()).collect(),
                    }
                };
            let mut locations = rule.regex.capture_locations();
            for window in ranges {
                self.run_rule(
                    index,
                    rule,
                    Input { data, path, commit },
                    window,
                    &mut locations,
                    &mut detections,
                    &mut vetoes,
                );
            }
        }
        resolve_overlaps(&self.rules, &mut detections, &vetoes);
        detections
    }

    /// Runs the regex over `window`. `locations` belong to `rule.regex` and are reused
    /// across calls, so a search allocates nothing.
    #[expect(clippy::too_many_arguments, reason = "internal helper of detect")]
    fn run_rule(
        &self,
        index: usize,
        rule: &CompiledRule,
        input: Input<'_>,
        window: Range<usize>,
        locations: &mut CaptureLocations,
        detections: &mut Collected<'_>,
        vetoes: &mut Vec<Range<usize>>,
    ) {
        let data = input.data;
        // Searching `haystack` from `position` keeps the bytes before the window visible,
        // so `\b` and `^` at the window start behave as on the whole buffer.
        let haystack = &data[..window.end];
        let mut position = window.start;
        while position <= haystack.len() {
            if rule
                .regex
                .captures_read_at(locations, haystack, position)
                .is_none()
            {
                break;
            }
            let (Some(whole), Some(secret)) = (locations.get(0), rule.secret_of(locations)) else {
                break;
            };
            position = if whole.0 == whole.1 {
                whole.1 + 1
            } else {
                whole.1
            };
            if !self.consider(
                index,
                rule,
                input,
                whole.0..whole.1,
                secret.0..secret.1,
                detections,
                vetoes,
            ) {
                break;
            }
        }
    }

    /// Runs the anchored form of the regex at every keyword hit.
    #[expect(clippy::too_many_arguments, reason = "internal helper of detect")]
    fn run_anchored(
        &self,
        index: usize,
        rule: &CompiledRule,
        anchored: &Regex,
        input: Input<'_>,
        hits: &[Range<usize>],
        max_len: usize,
        detections: &mut Collected<'_>,
        vetoes: &mut Vec<Range<usize>>,
    ) {
        let data = input.data;
        let mut consumed = 0;
        let mut locations = anchored.capture_locations();
        for hit in hits {
            if hit.start < consumed {
                continue;
            }
            let end = hit
                .start
                .saturating_add(max_len)
                .saturating_add(WORD_SLACK)
                .min(data.len());
            if anchored
                .captures_read(&mut locations, &data[hit.start..end])
                .is_none()
            {
                continue;
            }
            let (Some(whole), Some(secret)) = (locations.get(0), rule.secret_of(&locations)) else {
                continue;
            };
            let shift = |(start, end): (usize, usize)| hit.start + start..hit.start + end;
            consumed = hit.start + whole.1;
            if !self.consider(
                index,
                rule,
                input,
                shift(whole),
                shift(secret),
                detections,
                vetoes,
            ) {
                break;
            }
        }
    }

    /// Checks one candidate and records it. Returns `false` once the rule hit its cap.
    #[expect(clippy::too_many_arguments, reason = "internal helper of detect")]
    fn consider(
        &self,
        index: usize,
        rule: &CompiledRule,
        input: Input<'_>,
        whole: Range<usize>,
        secret: Range<usize>,
        detections: &mut Collected<'_>,
        vetoes: &mut Vec<Range<usize>>,
    ) -> bool {
        let data = input.data;
        let mut range = secret;
        let mut validated = false;
        // A specific format that matched but was rejected (bad checksum, placeholder,
        // low entropy) is known not to be a secret: generic rules must not report it.
        let mut veto = || {
            if !rule.generic {
                vetoes.push(whole.clone());
            }
            true
        };
        if let Some(kind) = rule.validate {
            let Some(valid) = validate(kind, &data[range.clone()]) else {
                return veto();
            };
            range = range.start + valid.start..range.start + valid.end;
            validated = true;
        }
        let bytes = &data[range.clone()];
        let entropy = shannon_entropy(bytes);
        if entropy < rule.entropy {
            return veto();
        }
        // A checksum-validated key is real even if it contains a "placeholder" word.
        if !validated {
            let lowercase = bytes.to_ascii_lowercase();
            let candidate = Candidate {
                path: input.path,
                secret: bytes,
                lowercase: &lowercase,
                data,
                whole: whole.clone(),
                commit: input.commit,
            };
            if self
                .global
                .iter()
                .chain(&rule.allow)
                .any(|allow| allow.allows(&candidate))
            {
                return veto();
            }
        }
        if rule.generic && !generic_value_plausible(bytes) {
            return true;
        }
        detections.all.push(Detection {
            rule: index,
            secret: range,
            whole: whole.clone(),
            validated,
            entropy,
        });
        detections.all.len() - detections.first < MAX_DETECTIONS_PER_RULE
    }
}

/// Candidate spans of custos keys: `_` followed by exactly 36 base62 characters and a
/// non-word byte. Rules validated as custos keys without keywords search only there, at
/// memchr speed, instead of running their regex over the whole buffer.
fn custos_key_windows(data: &[u8]) -> Vec<Range<usize>> {
    const BODY: usize = 36;
    const MAX_PREFIX: usize = 32;
    let is_word = |byte: u8| byte.is_ascii_alphanumeric() || byte == b'_';
    let mut windows: Vec<Range<usize>> = Vec::new();
    for underscore in memchr::memchr_iter(b'_', data) {
        let body_end = underscore + 1 + BODY;
        if body_end > data.len()
            || !data[underscore + 1..body_end]
                .iter()
                .all(u8::is_ascii_alphanumeric)
            || data.get(body_end).is_some_and(|&byte| is_word(byte))
        {
            continue;
        }
        let start = underscore.saturating_sub(MAX_PREFIX + 1);
        let end = (body_end + 1).min(data.len());
        match windows.last_mut() {
            Some(last) if start <= last.end => last.end = last.end.max(end),
            _ => windows.push(start..end),
        }
    }
    windows
}

/// The buffer being scanned and the path it came from.
#[derive(Clone, Copy)]
struct Input<'a> {
    data: &'a [u8],
    path: &'a str,
    commit: Option<&'a str>,
}

/// The detections of one buffer, and where the current rule's own start.
struct Collected<'a> {
    all: &'a mut Vec<Detection>,
    first: usize,
}

fn overlaps(a: &Range<usize>, b: &Range<usize>) -> bool {
    a.start < b.end && b.start < a.end
}

/// Drops the loser of every overlapping pair: a generic rule loses to a specific one,
/// otherwise the later rule (in priority order) loses. Generic detections also yield to
/// anything inside the whole match of a specific rule, and to vetoed spans.
fn resolve_overlaps(
    rules: &[CompiledRule],
    detections: &mut Vec<Detection>,
    vetoes: &[Range<usize>],
) {
    detections.sort_by_key(|detection| (detection.secret.start, detection.rule));
    let mut keep: Vec<bool> = detections
        .iter()
        .map(|detection| {
            !rules[detection.rule].generic
                || (!vetoes.iter().any(|veto| overlaps(veto, &detection.secret))
                    && !detections.iter().any(|other| {
                        !rules[other.rule].generic && overlaps(&other.whole, &detection.secret)
                    }))
        })
        .collect();
    for i in 0..detections.len() {
        for j in i + 1..detections.len() {
            if detections[j].secret.start >= detections[i].secret.end {
                break;
            }
            if !keep[i] || !keep[j] || !overlaps(&detections[i].secret, &detections[j].secret) {
                continue;
            }
            let (a, b) = (&detections[i], &detections[j]);
            let a_wins = match (rules[a.rule].generic, rules[b.rule].generic) {
                (false, true) => true,
                (true, false) => false,
                _ => a.rule <= b.rule,
            };
            if a_wins {
                keep[j] = false;
            } else {
                keep[i] = false;
            }
        }
    }
    let mut flags = keep.into_iter();
    detections.retain(|_| flags.next().unwrap_or(false));
}

#[cfg(test)]
mod tests;
