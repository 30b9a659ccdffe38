//! custos-client (being written).
