//! custos-scanner (being written).
