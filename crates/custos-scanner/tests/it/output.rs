//! Sinks and baselines.
