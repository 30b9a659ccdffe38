//! The shared storage conformance suite against PostgreSQL, one fresh database per case.

custos_storage::conformance_tests!(async || super::support::ScratchStorage::create()
    .await
    .map(std::sync::Arc::new));
