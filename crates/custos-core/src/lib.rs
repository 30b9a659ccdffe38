//! custos-core (being written).
