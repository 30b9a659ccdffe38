//! Shared helpers: a seeded random generator and a scanner over the default rules.

use custos_scanner::{Detector, RuleSet, ScanOptions, Scanner};

/// xorshift64*: deterministic, dependency-free randomness for generated test data.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    pub(crate) fn string(&mut self, alphabet: &[u8], len: usize) -> String {
        (0..len)
            .map(|_| char::from(alphabet[self.below(alphabet.len())]))
            .collect()
    }

    pub(crate) fn bytes<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        for byte in &mut out {
            *byte = self.next_u64() as u8;
        }
        out
    }

    pub(crate) fn pick<'a>(&mut self, items: &'a [&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

pub(crate) fn scanner() -> Scanner {
    let detector = Detector::new(&RuleSet::defaults().unwrap()).unwrap();
    Scanner::new(
        detector,
        ScanOptions {
            threads: 2,
            ..ScanOptions::default()
        },
    )
}

const B62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// A GitHub classic token with a valid checksum, different for every seed.
pub(crate) fn github_token(seed: u64) -> String {
    let mut rng = Rng::new(seed);
    let random = rng.string(B62, 30);
    let mut value = custos_core::crc32(random.as_bytes());
    let mut checksum = [b'0'; 6];
    for slot in checksum.iter_mut().rev() {
        *slot = B62[(value % 62) as usize];
        value /= 62;
    }
    format!(
        "ghp_{random}{}",
        String::from_utf8(checksum.to_vec()).unwrap()
    )
}

/// A custos API key with the given prefix, different for every seed.
pub(crate) fn custos_key(prefix: &str, seed: u64) -> String {
    let mut rng = Rng::new(seed);
    custos_core::ApiKey::from_random(prefix, &rng.bytes::<30>())
        .unwrap()
        .as_str()
        .to_owned()
}
