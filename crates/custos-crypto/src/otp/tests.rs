//! Tests of HOTP/TOTP vectors from RFC 4226 and RFC 6238, skew, and base32.

use super::*;

/// RFC 6238 appendix B, SHA-1 rows: the secret is the ASCII string "12345678901234567890"
/// and the codes have 8 digits.
#[test]
fn rfc6238_sha1_vectors() {
    let secret = b"12345678901234567890";
    for (time, code) in [
        (59_i64, 94_287_082_u32),
        (1_111_111_109, 7_081_804),
        (1_111_111_111, 14_050_471),
        (1_234_567_890, 89_005_924),
        (2_000_000_000, 69_279_037),
        (20_000_000_000, 65_353_130),
    ] {
        assert_eq!(hotp(secret, totp_step(time, 30), 8), code, "time {time}");
    }
}

/// RFC 4226 appendix D.
#[test]
fn rfc4226_vectors() {
    let secret = b"12345678901234567890";
    let expected = [
        755_224, 287_082, 359_152, 969_429, 338_314, 254_676, 287_922, 162_583, 399_871, 520_489,
    ];
    for (counter, code) in expected.into_iter().enumerate() {
        assert_eq!(hotp(secret, counter as u64, 6), code);
    }
}

#[test]
fn matching_allows_one_step_of_skew() {
    let secret = b"12345678901234567890";
    let step = totp_step(1_111_111_109, 30);
    let code = hotp(secret, step - 1, 6);
    assert_eq!(totp_match(secret, code, step, 1), Some(step - 1));
    assert_eq!(totp_match(secret, code, step + 1, 1), None);
    let later = hotp(secret, step + 1, 6);
    assert_eq!(totp_match(secret, later, step, 1), Some(step + 1));
}

#[test]
fn base32_matches_rfc4648() {
    // RFC 4648 section 10: the encodings of the prefixes of "foobar".
    let expected = [
        "",
        "MY",
        "MZXQ",
        "MZXW6",
        "MZXW6YQ",
        "MZXW6YTB",
        "MZXW6YTBOI",
    ];
    for (length, output) in expected.into_iter().enumerate() {
        assert_eq!(base32_encode(&b"foobar"[..length]), output);
    }
}
