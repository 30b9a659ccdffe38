//! custos-engine (being written).
