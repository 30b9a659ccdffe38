//! custos-server (being written).
