//! Tests of `custos operator generate-root`: OTP decoding and argument handling.

use base64::Engine as _;

use super::*;

fn encode(token: &str, otp: &str) -> String {
    let xored: Vec<u8> = token.bytes().zip(otp.bytes()).map(|(a, b)| a ^ b).collect();
    base64::engine::general_purpose::STANDARD_NO_PAD.encode(xored)
}

#[test]
fn decoding_reverses_the_servers_encoding() {
    let otp = random_otp(49).expect("otp");
    let token = "custos_token_0123456789abcdefghijABCDEFGHIJ012345";
    assert_eq!(token.len(), 49);
    let encoded = encode(token, &otp);
    assert_eq!(
        decode_token(&encoded, &otp).expect("decode").as_str(),
        token
    );
    // Padded base64 and surrounding whitespace (a pasted value) decode too.
    let padded = format!(" {encoded}==\n");
    assert_eq!(decode_token(&padded, &otp).expect("decode").as_str(), token);
}

#[test]
fn decoding_with_the_wrong_otp_or_garbage_fails() {
    let otp = random_otp(49).expect("otp");
    let encoded = encode("custos_token_0123456789abcdefghijABCDEFGHIJ012345", &otp);
    assert!(decode_token(&encoded, "short").is_err());
    assert!(decode_token("not base64!", &otp).is_err());
}

#[test]
fn generated_otps_are_base62_of_the_asked_length() {
    for length in [1, 28, 49, 100] {
        let otp = random_otp(length).expect("otp");
        assert_eq!(otp.len(), length);
        assert!(otp.bytes().all(|byte| byte.is_ascii_alphanumeric()));
    }
    assert_ne!(*random_otp(49).expect("otp"), *random_otp(49).expect("otp"));
}
