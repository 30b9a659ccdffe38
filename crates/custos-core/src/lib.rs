//! custos-core: pure domain types and rules, with no I/O, clock, randomness or serde.
//!
//! Everything here can be tested and fuzzed without a runtime; callers pass in time and
//! randomness as arguments.

mod api_key;
mod cidr;
pub mod permission;
pub mod ratelimit;
pub mod refill;

pub use api_key::{ApiKey, ApiKeyError, CUSTOS_TOKEN_PREFIX, crc32};
pub use cidr::{Cidr, CidrError};
pub use permission::{
    Grants, MAX_PERMISSION_LEN, MAX_QUERY_DEPTH, MAX_QUERY_LEN, MAX_QUERY_TERMS, PermissionError,
    Query, validate_grant, validate_permission,
};
pub use ratelimit::{Outcome, Window};
pub use refill::{Interval, RefillError, next_refill, refill_due};
