//! Git history and staged changes.
