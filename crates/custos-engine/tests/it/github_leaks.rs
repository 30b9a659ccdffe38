//! `sys/leaks/github`: reports signed by a configured GitHub key revoke live credentials and are
//! answered with GitHub's labels; unsigned, wrongly signed or malformed reports revoke nothing.
//! Keys and signatures are made by rcgen, an encoder independent of custos-crypto's reader.

use base64::Engine as _;
use custos_engine::logical::Operation;
use custos_engine::{
    Connection, EngineError, GithubLeakKeys, GithubLeakReport, GithubLeakVerdict, Limits, Request,
};
use rcgen::SigningKey as _;
use serde_json::json;

use crate::support::Harness;

const KEY_ID: &str = "90a421169f0a406205f1563a953312f0be898d3c7b6c06b681aa86a874555f4a";

struct GithubKey {
    pair: rcgen::KeyPair,
}

impl GithubKey {
    fn new() -> GithubKey {
        GithubKey {
            pair: rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap(),
        }
    }

    fn keys(&self) -> GithubLeakKeys {
        let mut keys = GithubLeakKeys::new();
        keys.add_pem(KEY_ID, &self.pair.public_key_pem()).unwrap();
        keys
    }

    fn sign(&self, body: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.pair.sign(body).unwrap())
    }
}

async fn send(
    harness: &Harness,
    keys: &GithubLeakKeys,
    key_identifier: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
) -> Result<Vec<GithubLeakVerdict>, EngineError> {
    let connection = Connection::default();
    harness
        .engine
        .report_github_leaks(
            keys,
            GithubLeakReport {
                key_identifier,
                signature,
                body,
                request_id: "github-1",
                connection: &connection,
            },
        )
        .await
}

/// A child token of root, live.
async fn child_token(harness: &Harness, root: &str) -> String {
    let answer = harness
        .engine
        .handle(
            Request::new(Operation::Update, "auth/token/create")
                .token(root)
                .data(json!({"policies": ["default"]})),
        )
        .await
        .unwrap()
        .unwrap();
    answer.auth.unwrap().client_token
}

async fn works(harness: &Harness, token: &str) -> bool {
    harness
        .engine
        .handle(Request::new(Operation::Read, "auth/token/lookup-self").token(token))
        .await
        .is_ok()
}

#[tokio::test]
async fn a_signed_report_revokes_ours_and_labels_the_rest() {
    let (harness, audit) = Harness::with(Limits::default());
    let root = harness.init_unsealed(1, 1).await.root_token.to_string();
    let token = child_token(&harness, &root).await;
    let github = GithubKey::new();
    let body = serde_json::to_vec(&json!([
        {"token": token, "type": "custos_token", "url": "https://github.com/a/b/blob/main/.env", "source": "content"},
        {"token": "ghp_not_ours_at_all", "type": "custos_token", "url": "https://github.com/a/b"},
        {"token": root, "type": "custos_root", "source": "commit"},
    ]))
    .unwrap();
    let verdicts = send(
        &harness,
        &github.keys(),
        Some(KEY_ID),
        Some(&github.sign(&body)),
        &body,
    )
    .await
    .unwrap();
    assert_eq!(
        verdicts,
        [
            GithubLeakVerdict {
                token_hash: custos_crypto::sha256_hex(token.as_bytes()),
                token_type: "custos_token".into(),
                true_positive: true,
            },
            GithubLeakVerdict {
                token_hash: custos_crypto::sha256_hex(b"ghp_not_ours_at_all"),
                token_type: "custos_token".into(),
                true_positive: false,
            },
            // A root token is ours and live: marked leaked, not revoked.
            GithubLeakVerdict {
                token_hash: custos_crypto::sha256_hex(root.as_bytes()),
                token_type: "custos_root".into(),
                true_positive: true,
            },
        ]
    );
    assert_eq!(verdicts[0].label(), "true_positive");
    assert_eq!(verdicts[1].label(), "false_positive");
    assert!(
        !works(&harness, &token).await,
        "the reported token is revoked"
    );
    assert!(
        works(&harness, &root).await,
        "the root token is only marked"
    );

    // Audited as sys/leaks/github, request and response, plus the root token's alert.
    let records: Vec<_> = audit
        .records()
        .into_iter()
        .filter(|record| record.path == "sys/leaks/github")
        .collect();
    assert_eq!(records.len(), 2, "{records:?}");
    assert_eq!(records[0].caller, "github-leak-report");
    assert_eq!(records[1].outcome, Some(Ok(())));
    assert!(audit.records().iter().any(|record| record.alert.is_some()));

    // Reported again: the token is gone, so now a false positive.
    let again = send(
        &harness,
        &github.keys(),
        Some(KEY_ID),
        Some(&github.sign(&body)),
        &body,
    )
    .await
    .unwrap();
    assert!(!again[0].true_positive);
}

#[tokio::test]
async fn unsigned_or_wrongly_signed_reports_revoke_nothing_and_are_audited() {
    let (harness, audit) = Harness::with(Limits::default());
    let root = harness.init_unsealed(1, 1).await.root_token.to_string();
    let token = child_token(&harness, &root).await;
    let github = GithubKey::new();
    let body = serde_json::to_vec(&json!([{"token": token, "type": "custos_token"}])).unwrap();
    let good = github.sign(&body);
    let other = GithubKey::new().sign(&body);
    let altered = {
        let mut altered = body.clone();
        altered.push(b' ');
        github.sign(&altered)
    };
    let keys = github.keys();
    for (key_identifier, signature, expected) in [
        (
            None,
            Some(good.as_str()),
            "missing Github-Public-Key-Identifier",
        ),
        (Some(KEY_ID), None, "missing Github-Public-Key-Signature"),
        (
            Some(" "),
            Some(good.as_str()),
            "missing Github-Public-Key-Identifier",
        ),
        (
            Some("another-key"),
            Some(good.as_str()),
            "unknown Github-Public-Key-Identifier",
        ),
        (Some(KEY_ID), Some(other.as_str()), "does not verify"),
        (Some(KEY_ID), Some(altered.as_str()), "does not verify"),
        (Some(KEY_ID), Some("%%%"), "not a base64 ECDSA signature"),
    ] {
        match send(&harness, &keys, key_identifier, signature, &body).await {
            Err(EngineError::InvalidSignature(message)) => {
                assert!(message.contains(expected), "{message}");
                assert!(!message.contains(&token), "{message}");
            }
            other => panic!("{key_identifier:?} {signature:?}: {:?}", other.is_ok()),
        }
    }
    // No key configured: nothing verifies.
    assert!(matches!(
        send(
            &harness,
            &GithubLeakKeys::new(),
            Some(KEY_ID),
            Some(&good),
            &body
        )
        .await,
        Err(EngineError::InvalidSignature(_))
    ));
    assert!(works(&harness, &token).await, "nothing was revoked");
    let refused: Vec<_> = audit
        .records()
        .into_iter()
        .filter(|record| record.path == "sys/leaks/github")
        .collect();
    // A request and a response record per refusal, the response naming the error.
    assert_eq!(refused.len(), 16, "{refused:?}");
    assert!(
        matches!(&refused[1].outcome, Some(Err(message)) if message.contains("Github-Public-Key-Identifier")),
        "{refused:?}"
    );
}

#[tokio::test]
async fn a_signed_body_that_is_not_a_report_is_invalid() {
    let (harness, _root) = Harness::unsealed().await;
    let github = GithubKey::new();
    for body in [
        &b"{\"leaks\": []}"[..],
        b"not json",
        b"[1]",
        b"[{\"token\": 7}]",
    ] {
        let result = send(
            &harness,
            &github.keys(),
            Some(KEY_ID),
            Some(&github.sign(body)),
            body,
        )
        .await;
        assert!(
            matches!(result, Err(EngineError::InvalidRequest(_))),
            "{}",
            String::from_utf8_lossy(body)
        );
    }
    // An empty report is answered with an empty list.
    let verdicts = send(
        &harness,
        &github.keys(),
        Some(KEY_ID),
        Some(&github.sign(b"[]")),
        b"[]",
    )
    .await
    .unwrap();
    assert!(verdicts.is_empty());
}

#[tokio::test]
async fn a_sealed_server_refuses_github_reports() {
    let harness = Harness::new();
    let github = GithubKey::new();
    let body = b"[]";
    assert!(matches!(
        send(
            &harness,
            &github.keys(),
            Some(KEY_ID),
            Some(&github.sign(body)),
            body
        )
        .await,
        Err(EngineError::Sealed)
    ));
}
