//! custos-storage-postgres (being written).
