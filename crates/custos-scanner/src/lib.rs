//! custos-scanner: finds leaked secrets in files, streams and git history.
//!
//! The crate is shaped like ripgrep's searcher:
//! - [`RuleSet`] is data: rules loaded from TOML (embedded defaults plus user files).
//! - [`Detector`] decides what matches: a keyword prefilter (Aho-Corasick) picks the few
//!   rules whose regexes run on a buffer, then entropy, placeholder, allowlist and checksum
//!   checks (custos keys through `custos_core::ApiKey::parse`, GitHub tokens) weed out noise.
//! - [`Scanner`] walks bytes, files (in parallel, honouring `.gitignore` and `.custosignore`),
//!   stdin, git history and staged changes, and turns detections into [`Finding`]s.
//! - A [`FindingSink`] decides where findings go: text, JSON lines or SARIF 2.1.0.
//!
//! It never depends on the custos server, so it runs offline as a pre-commit hook.

mod baseline;
mod checks;
mod detector;
mod finding;
mod git;
mod rules;
mod scanner;
mod sink;

pub use baseline::{Baseline, BaselineError};
pub use detector::{Detection, Detector};
pub use finding::{CommitInfo, Finding, redact};
pub use rules::{RuleError, RuleSet, RuleSpec};
pub use scanner::{NoProgress, Problem, Progress, ScanError, ScanOptions, ScanOutcome, Scanner};
/// Entry points for the fuzz targets in `fuzz/`; not a stable API.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::git::{ParsedChunk, parse_patch_bytes};
}
pub use sink::{FindingSink, JsonLinesSink, OutputFormat, SarifSink, TextSink, sink_for};
