//! Integration tests of custos-scanner: the labelled corpus (precision and recall), files
//! and directories, git history and staged changes, baselines and SARIF.
#![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]

mod corpus;
mod files;
mod git;
mod gitleaks;
mod output;
mod util;
