//! Tests of the chain verifier: intact chains pass, and every single change is found and named.

use proptest::prelude::*;

use super::*;
use crate::chain::{Checkpoint, line_hash, push_record};

/// A chain of `records` records with a checkpoint after every `every` of them (0: none) and,
/// when `closed`, a closing checkpoint at the end; each line without its newline.
fn chain_from(
    first_seq: u64,
    first_prev: &str,
    records: usize,
    every: usize,
    closed: bool,
) -> Vec<Vec<u8>> {
    let mut lines = Vec::new();
    let mut seq = first_seq;
    let mut prev = first_prev.to_owned();
    let push = |buffer: Vec<u8>, lines: &mut Vec<Vec<u8>>, prev: &mut String| {
        let line = buffer[..buffer.len() - 1].to_vec();
        *prev = line_hash(&line);
        lines.push(line);
    };
    for index in 0..records {
        let mut buffer = Vec::new();
        let record = format!(
            r#"{{"time":"2026-11-28T10:00:{:02}Z","type":"request","request":{{"path":"secret/data/{index}","operation":"read"}}}}"#,
            index % 60
        );
        push_record(&mut buffer, seq, &prev, record.as_bytes()).unwrap();
        seq += 1;
        push(buffer, &mut lines, &mut prev);
        let last = index + 1 == records;
        if (every > 0 && (index + 1) % every == 0 && !last) || (last && closed) {
            let mut buffer = Vec::new();
            Checkpoint {
                device: "file/",
                seq,
                prev_hash: &prev,
                time: "2026-11-28T10:01:00.000000000Z",
                reason: if last {
                    CheckpointReason::Close
                } else {
                    CheckpointReason::Count
                },
                signature: Some("hmac-sha256:00"),
            }
            .push(&mut buffer);
            seq += 1;
            push(buffer, &mut lines, &mut prev);
        }
    }
    lines
}

fn chain(records: usize, every: usize) -> Vec<Vec<u8>> {
    chain_from(1, GENESIS_HASH, records, every, false)
}

fn joined(lines: &[Vec<u8>]) -> Vec<u8> {
    let mut bytes = Vec::new();
    for line in lines {
        bytes.extend_from_slice(line);
        bytes.push(b'\n');
    }
    bytes
}

fn verify(lines: &[Vec<u8>]) -> Report {
    verify_bytes(&joined(lines), VerifyOptions::default())
}

fn problem(lines: &[Vec<u8>]) -> Problem {
    verify(lines).problem.expect("a problem")
}

#[test]
fn an_intact_chain_verifies() {
    let report = verify(&chain(25, 10));
    assert_eq!(report.problem, None, "{report:?}");
    assert_eq!(report.first_seq, Some(1));
    assert_eq!(report.last_seq, Some(27));
    assert_eq!(report.checkpoints, 2);
    assert_eq!(report.signed.len(), 2);
    assert_eq!(report.uncovered, 5);
    assert!(
        report.warnings[0].contains("5 records after the last checkpoint (seq 22)"),
        "{:?}",
        report.warnings
    );
}

#[test]
fn each_kind_of_damage_is_named() {
    let lines = chain(6, 0);
    let mut altered = lines.clone();
    altered[2] = String::from_utf8(altered[2].clone())
        .unwrap()
        .replace("read", "list")
        .into_bytes();
    let found = problem(&altered);
    assert_eq!(
        (found.kind, found.line, found.seq),
        (ProblemKind::Altered, 3, Some(3))
    );

    let mut removed = lines.clone();
    removed.remove(3);
    let found = problem(&removed);
    assert_eq!((found.kind, found.line), (ProblemKind::Removed, 4));
    assert!(found.message.contains("seq 4 is missing"), "{found}");

    let mut swapped = lines.clone();
    swapped.swap(2, 3);
    assert_eq!(problem(&swapped).kind, ProblemKind::Reordered);

    let mut inserted = lines.clone();
    inserted.insert(4, lines[1].clone());
    let found = problem(&inserted);
    assert_eq!((found.kind, found.line), (ProblemKind::Inserted, 5));

    let mut malformed = lines.clone();
    malformed[1] = b"not json".to_vec();
    assert_eq!(problem(&malformed).kind, ProblemKind::Malformed);
}

#[test]
fn a_torn_last_line_is_truncation_unless_live() {
    let mut bytes = joined(&chain(3, 0));
    bytes.extend_from_slice(br#"{"seq":4,"prev"#);
    let report = verify_bytes(&bytes, VerifyOptions::default());
    let found = report.problem.unwrap();
    assert_eq!((found.kind, found.line), (ProblemKind::Truncated, 4));
    let live = verify_bytes(
        &bytes,
        VerifyOptions {
            live: true,
            ..VerifyOptions::default()
        },
    );
    assert_eq!(live.problem, None);
    assert!(
        live.warnings
            .iter()
            .any(|warning| warning.contains("no newline"))
    );
}

#[test]
fn a_torn_line_closed_by_a_newline_is_malformed() {
    let lines = chain(3, 0);
    let mut bytes = joined(&lines[..2]);
    bytes.extend_from_slice(b"{\"seq\":3,\"pr\n");
    bytes.extend_from_slice(&joined(&lines[2..]));
    let found = verify_bytes(&bytes, VerifyOptions::default())
        .problem
        .unwrap();
    assert_eq!((found.kind, found.line), (ProblemKind::Malformed, 3));
}

#[test]
fn files_must_link_and_earlier_files_must_be_closed() {
    let directory = tempfile::tempdir().unwrap();
    let first = chain_from(1, GENESIS_HASH, 4, 0, true);
    let last_hash = line_hash(first.last().unwrap());
    let second = chain_from(6, &last_hash, 3, 0, false);
    let one = directory.path().join("a.log");
    let two = directory.path().join("b.log");
    std::fs::write(&one, joined(&first)).unwrap();
    std::fs::write(&two, joined(&second)).unwrap();
    let report = verify_files(&[one.clone(), two.clone()], VerifyOptions::default()).unwrap();
    assert_eq!(report.problem, None);
    assert_eq!(report.last_seq, Some(8));
    assert_eq!(first_seq(&two).unwrap(), Some(6));

    // The closing checkpoint cut off: the first file is truncated.
    std::fs::write(&one, joined(&first[..4])).unwrap();
    let found = verify_files(&[one.clone(), two.clone()], VerifyOptions::default())
        .unwrap()
        .problem
        .unwrap();
    assert_eq!(found.kind, ProblemKind::Truncated);
    assert!(found.file.ends_with("a.log"), "{found}");

    // Files given the wrong way round.
    std::fs::write(&one, joined(&first)).unwrap();
    let found = verify_files(&[two, one], VerifyOptions::default())
        .unwrap()
        .problem
        .unwrap();
    assert_eq!(found.kind, ProblemKind::Truncated, "{found}");

    // An archive must be closed.
    let open = directory.path().join("c.log");
    std::fs::write(&open, joined(&chain(2, 0))).unwrap();
    let closed = VerifyOptions {
        closed: true,
        ..VerifyOptions::default()
    };
    assert_eq!(
        verify_files(&[open], closed).unwrap().problem.unwrap().kind,
        ProblemKind::Truncated
    );
}

#[test]
fn extreme_sequence_numbers_are_judged_without_overflow() {
    let other = format!("sha256:{}", "1".repeat(64));
    let line = |seq: u64| format!(r#"{{"seq":{seq},"prev_hash":"{other}"}}"#);
    for seqs in [
        [u64::MAX - 2, u64::MAX - 1, u64::MAX - 1],
        [u64::MAX - 1, 1, u64::MAX - 1],
        [u64::MAX - 1, u64::MAX, 3],
    ] {
        let bytes: String = seqs.iter().map(|seq| line(*seq) + "\n").collect();
        let report = verify_bytes(bytes.as_bytes(), VerifyOptions::default());
        assert!(report.problem.is_some(), "{seqs:?}");
    }
    let found = verify(&[line(u64::MAX).into_bytes()]).problem.unwrap();
    assert_eq!(found.kind, ProblemKind::Malformed);
}

#[test]
fn a_chain_may_start_late_with_a_warning() {
    let lines = chain(5, 0);
    let report = verify(&lines[2..]);
    assert_eq!(report.problem, None);
    assert!(
        report.warnings[0].contains("starts at seq 3"),
        "{:?}",
        report.warnings
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_chains_verify(records in 1usize..40, every in 0usize..7, closed: bool) {
        let report = verify(&chain_from(1, GENESIS_HASH, records, every, closed));
        prop_assert_eq!(report.problem, None);
    }

    #[test]
    fn any_changed_byte_is_found(records in 2usize..20, every in 0usize..5, line: prop::sample::Index, offset: prop::sample::Index, byte: u8) {
        let mut lines = chain(records, every);
        let index = line.index(lines.len() - 1);
        let position = offset.index(lines[index].len());
        prop_assume!(lines[index][position] != byte);
        lines[index][position] = byte;
        let found = problem(&lines);
        prop_assert!(matches!(found.kind, ProblemKind::Altered | ProblemKind::Malformed), "{}", found);
        prop_assert_eq!(found.line, index as u64 + 1, "{}", found);
    }

    #[test]
    fn a_removed_line_is_found(records in 3usize..20, every in 0usize..5, line: prop::sample::Index) {
        let mut lines = chain(records, every);
        let index = 1 + line.index(lines.len() - 2);
        lines.remove(index);
        let found = problem(&lines);
        prop_assert_eq!(found.kind, ProblemKind::Removed, "{}", found);
        prop_assert_eq!(found.line, index as u64 + 1);
    }

    #[test]
    fn swapped_lines_are_found(records in 2usize..20, every in 0usize..5, line: prop::sample::Index) {
        let mut lines = chain(records, every);
        let index = line.index(lines.len() - 1);
        lines.swap(index, index + 1);
        let found = problem(&lines);
        prop_assert_eq!(found.kind, ProblemKind::Reordered, "{}", found);
    }

    #[test]
    fn an_inserted_line_is_found(records in 2usize..20, every in 0usize..5, at: prop::sample::Index, copy: prop::sample::Index) {
        let mut lines = chain(records, every);
        let index = at.index(lines.len());
        let source = copy.index(lines.len());
        let duplicate = lines[source].clone();
        lines.insert(index, duplicate);
        let found = problem(&lines);
        if source == index + 1 {
            prop_assert!(matches!(found.kind, ProblemKind::Inserted | ProblemKind::Reordered), "{}", found);
        } else {
            prop_assert_eq!(found.kind, ProblemKind::Inserted, "{}", found);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes: Vec<u8>) {
        let _ = verify_bytes(&bytes, VerifyOptions::default());
    }
}
