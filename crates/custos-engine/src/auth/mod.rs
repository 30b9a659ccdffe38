//! Auth methods: backends whose login answers a token grant instead of a secret.

#[cfg_attr(
    not(test),
    allow(dead_code, reason = "wired into the auth framework's factory at merge")
)]
pub(crate) mod approle;
#[cfg_attr(
    not(test),
    allow(dead_code, reason = "wired into the auth framework's factory at merge")
)]
pub(crate) mod cert;
#[cfg_attr(
    not(test),
    allow(
        dead_code,
        reason = "used by the auth methods above, wired in at merge"
    )
)]
pub(crate) mod token_fields;
