//! Unit tests for Shamir sharing: field arithmetic, Vault-layout vectors, rules and properties.

use proptest::prelude::*;

use super::*;
use crate::test_support::{from_hex, to_hex};

/// Reference multiplication: the schoolbook carry-less product, reduced by 0x11b.
fn slow_mul(a: u8, b: u8) -> u8 {
    let mut product: u16 = 0;
    for bit in 0..8 {
        if b & (1 << bit) != 0 {
            product ^= u16::from(a) << bit;
        }
    }
    for bit in (8..16).rev() {
        if product & (1 << bit) != 0 {
            product ^= 0x11b << (bit - 8);
        }
    }
    u8::try_from(product).expect("reduced below 256")
}

#[test]
fn gf_mul_matches_the_reference_on_every_pair() {
    for a in 0..=255u8 {
        for b in 0..=255u8 {
            assert_eq!(gf_mul(a, b), slow_mul(a, b), "{a} * {b}");
        }
    }
    // FIPS-197 section 4.2 example, and a known inverse pair.
    assert_eq!(gf_mul(0x57, 0x83), 0xc1);
    assert_eq!(gf_mul(0x53, 0xca), 0x01);
}

#[test]
fn gf_inv_inverts_every_non_zero_element() {
    assert_eq!(gf_inv(0), 0);
    for a in 1..=255u8 {
        assert_eq!(gf_mul(a, gf_inv(a)), 1, "{a}");
    }
}

/// Shares of "custos root key!" (threshold 3), computed independently in Python with
/// log/exp tables over the same field, the way Vault's `shamir` package computes them,
/// with x-coordinates 7, 200, 33 and 1.
const VAULT_LAYOUT_SHARES: [&str; 4] = [
    "3a66f41c1ffef053d00cb00601e98c4307",
    "e148d0ed288fcdbdea0138ab817cf8dbc8",
    "eb900e40b77880c4c2131a1ef5eab0a021",
    "2b4906c7e085fafdee889bd3d28b71ed01",
];

#[test]
fn combines_shares_computed_by_an_independent_implementation() {
    let shares: Vec<Share> = VAULT_LAYOUT_SHARES
        .iter()
        .map(|hex| Share::from_bytes(&from_hex(hex)).expect("share"))
        .collect();
    assert_eq!(
        shares.iter().map(Share::x).collect::<Vec<_>>(),
        [7, 200, 33, 1]
    );
    for subset in [[0, 1, 2], [1, 2, 3], [3, 0, 2], [2, 3, 1]] {
        let chosen: Vec<Share> = subset.iter().map(|&i| shares[i].clone()).collect();
        let secret = combine(&chosen).expect("combine");
        assert_eq!(secret.as_slice(), b"custos root key!");
    }
    assert_eq!(
        combine(&shares).expect("combine").as_slice(),
        b"custos root key!"
    );
}

#[test]
fn shares_have_the_vault_layout() {
    let secret = [0xabu8; 32];
    let shares = split(&secret, 5, 3).expect("split");
    assert_eq!(shares.len(), 5);
    let mut xs: Vec<u8> = shares.iter().map(Share::x).collect();
    for share in &shares {
        assert_eq!(share.as_bytes().len(), 33);
        assert_eq!(share.as_bytes()[32], share.x());
        assert_ne!(share.x(), 0);
    }
    xs.sort_unstable();
    xs.dedup();
    assert_eq!(xs.len(), 5, "x-coordinates are unique");
}

fn subsets(n: usize, k: usize) -> Vec<Vec<usize>> {
    if k == 0 {
        return vec![Vec::new()];
    }
    if n < k {
        return Vec::new();
    }
    let mut with_last = subsets(n - 1, k - 1);
    for subset in &mut with_last {
        subset.push(n - 1);
    }
    with_last.extend(subsets(n - 1, k));
    with_last
}

#[test]
fn any_threshold_of_shares_recovers_and_fewer_do_not() {
    let mut secret = [0u8; 32];
    crate::fill_random(&mut secret).expect("random");
    let shares = split(&secret, 5, 3).expect("split");
    for k in 1..=5 {
        for subset in subsets(5, k) {
            let chosen: Vec<Share> = subset.iter().map(|&i| shares[i].clone()).collect();
            let combined = combine(&chosen).expect("combine");
            assert_eq!(combined.len(), 32);
            if k >= 3 {
                assert_eq!(combined.as_slice(), secret, "subset {subset:?}");
            } else {
                // Not an error: the math gives some bytes, just not the secret.
                assert_ne!(combined.as_slice(), secret, "subset {subset:?}");
            }
        }
    }
}

#[test]
fn single_share_with_threshold_1_is_the_secret_plus_x() {
    let shares = split(b"abc", 1, 1).expect("split");
    assert_eq!(shares.len(), 1);
    let share = &shares[0];
    assert_eq!(share.as_bytes().len(), 4);
    assert_eq!(&share.as_bytes()[..3], b"abc");
    assert_ne!(share.x(), 0);
    assert_eq!(combine(&shares).expect("combine").as_slice(), b"abc");
}

#[test]
fn two_of_two_recovers() {
    let shares = split(b"k", 2, 2).expect("split");
    assert_eq!(combine(&shares).expect("combine").as_slice(), b"k");
}

#[test]
fn shares_255_works() {
    let secret = b"the largest share count";
    let shares = split(secret, 255, 3).expect("split");
    assert_eq!(shares.len(), 255);
    let mut xs: Vec<u8> = shares.iter().map(Share::x).collect();
    xs.sort_unstable();
    assert_eq!(xs, (1..=255).collect::<Vec<u8>>());
    assert_eq!(
        combine(&shares[100..103]).expect("combine").as_slice(),
        secret
    );
    let shares = split(secret, 255, 255).expect("split");
    assert_eq!(combine(&shares).expect("combine").as_slice(), secret);
    assert_ne!(combine(&shares[1..]).expect("combine").as_slice(), secret);
}

#[test]
fn split_validates_parameters() {
    let invalid = |secret: &[u8], shares: u8, threshold: u8| {
        assert!(
            matches!(
                split(secret, shares, threshold),
                Err(ShamirError::InvalidParameters(_))
            ),
            "split({secret:?}, {shares}, {threshold}) was accepted"
        );
    };
    invalid(b"", 3, 2);
    invalid(b"s", 0, 0);
    invalid(b"s", 0, 1);
    invalid(b"s", 3, 0);
    invalid(b"s", 1, 0);
    invalid(b"s", 2, 3);
    invalid(b"s", 1, 2);
    invalid(b"s", 3, 1);
    invalid(b"s", 2, 1);
    invalid(b"s", 255, 1);
    // 256 shares cannot be asked for: the count is a `u8`.
    assert!(split(b"s", 255, 255).is_ok());
}

#[test]
fn combine_rejects_bad_input() {
    let shares = split(b"secret", 3, 2).expect("split");
    assert_eq!(combine(&[]).map(|_| ()), Err(ShamirError::NotEnoughShares));
    assert_eq!(
        combine(&[shares[0].clone(), shares[0].clone()]).map(|_| ()),
        Err(ShamirError::DuplicateShare)
    );
    assert_eq!(
        combine(&[shares[0].clone(), shares[1].clone(), shares[0].clone()]).map(|_| ()),
        Err(ShamirError::DuplicateShare)
    );

    // Same x-coordinate with different y bytes is still a duplicate.
    let mut forged = shares[1].as_bytes().to_vec();
    *forged.last_mut().expect("non-empty") = shares[0].x();
    let forged = Share::from_bytes(&forged).expect("share");
    assert_eq!(
        combine(&[shares[0].clone(), forged]).map(|_| ()),
        Err(ShamirError::DuplicateShare)
    );

    let longer = split(b"secret!", 3, 2).expect("split");
    assert_eq!(
        combine(&[shares[0].clone(), longer[1].clone()]).map(|_| ()),
        Err(ShamirError::InconsistentShareLength)
    );
}

#[test]
fn from_bytes_rejects_malformed_shares() {
    for bytes in [&[][..], &[5][..], &[1, 2, 0][..], &[9, 0][..]] {
        assert!(
            matches!(Share::from_bytes(bytes), Err(ShamirError::InvalidShare(_))),
            "{bytes:?} was accepted"
        );
    }
    let share = Share::from_bytes(&[9, 1]).expect("two bytes");
    assert_eq!(share.as_bytes(), &[9, 1]);
    assert_eq!(share.x(), 1);
}

#[test]
fn debug_shows_no_share_bytes() {
    let secret = [0x5cu8; 32];
    for share in split(&secret, 3, 2).expect("split") {
        let debug = format!("{share:?} {share:#?}");
        assert!(!debug.contains(&to_hex(share.as_bytes())));
        assert!(!debug.contains(&to_hex(&share.as_bytes()[..32])));
        assert!(!debug.contains(&format!("{:?}", share.as_bytes())));
        assert!(debug.contains("<redacted>"));
    }
}

/// A secret, a share count, a threshold and a random order of the share indices.
fn split_case() -> impl Strategy<Value = (Vec<u8>, u8, u8, Vec<usize>)> {
    (proptest::collection::vec(any::<u8>(), 1..64), 2u8..=10).prop_flat_map(|(secret, shares)| {
        let order: Vec<usize> = (0..usize::from(shares)).collect();
        (
            Just(secret),
            Just(shares),
            2u8..=shares,
            Just(order).prop_shuffle(),
        )
    })
}

proptest! {
    #[test]
    fn split_then_combine_round_trips((secret, shares, threshold, order) in split_case()) {
        let all = split(&secret, shares, threshold).expect("split");
        prop_assert_eq!(all.len(), usize::from(shares));

        let chosen: Vec<Share> = order
            .iter()
            .take(usize::from(threshold))
            .map(|&i| all[i].clone())
            .collect();
        let recovered = combine(&chosen).expect("combine");
        prop_assert_eq!(recovered.as_slice(), secret.as_slice());

        let shuffled: Vec<Share> = order.iter().map(|&i| all[i].clone()).collect();
        let recovered = combine(&shuffled).expect("combine");
        prop_assert_eq!(recovered.as_slice(), secret.as_slice());
    }
}
