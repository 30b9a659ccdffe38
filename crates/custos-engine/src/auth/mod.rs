//! Auth methods: backends whose login answers a token grant instead of a secret.

#[cfg_attr(
    not(test),
    allow(dead_code, reason = "wired into the auth framework's factory at merge")
)]
pub(crate) mod approle;
pub(crate) mod token_fields;
