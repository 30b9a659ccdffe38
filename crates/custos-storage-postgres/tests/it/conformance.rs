//! The shared storage conformance suite against PostgreSQL, one fresh database per case.

custos_storage::conformance_tests!(async || super::support::scratch_storage()
    .await
    .map(std::sync::Arc::new));
