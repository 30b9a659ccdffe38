//! Helpers shared by the unit tests: hex decoding and fixed keys.

use crate::Keyring;

/// Decodes lower- or upper-case hex; panics on bad input, which is fine in tests.
pub(crate) fn from_hex(hex: &str) -> Vec<u8> {
    assert!(hex.len().is_multiple_of(2), "odd-length hex");
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("valid hex"))
        .collect()
}

/// Lower-case hex, re-exported for tests.
pub(crate) fn to_hex(bytes: &[u8]) -> String {
    crate::hash::to_hex(bytes)
}

/// A keyring with a fixed single key at term 1 (bytes 0..32), installed at unix time 1000.
pub(crate) fn fixed_keyring() -> Keyring {
    let mut encoded = vec![1u8];
    encoded.extend_from_slice(&1u32.to_be_bytes());
    encoded.extend_from_slice(&1u32.to_be_bytes());
    encoded.extend_from_slice(&1u32.to_be_bytes());
    encoded.extend_from_slice(&1000i64.to_be_bytes());
    encoded.extend((0u8..32).collect::<Vec<u8>>());
    Keyring::decode(&encoded).expect("fixed keyring decodes")
}
