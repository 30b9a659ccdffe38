//! custos-storage-sqlite (being written).
