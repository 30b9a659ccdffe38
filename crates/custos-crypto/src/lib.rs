//! custos-crypto (being written).
