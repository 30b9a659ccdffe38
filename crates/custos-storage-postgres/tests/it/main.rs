//! Integration tests of the PostgreSQL backend. They need a server: set
//! `CUSTOS_TEST_POSTGRES_URL` (e.g. `postgres://postgres@127.0.0.1:5432/postgres`); without it
//! every test prints "skipped: CUSTOS_TEST_POSTGRES_URL not set" and passes. Each test runs in a
//! fresh database that is dropped when the test ends.

mod conformance;
mod postgres;
mod support;
