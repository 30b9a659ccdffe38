//! custos-api (being written).
