//! `custos scan --revoke-with URL`: the custos credentials a scan found (checksum-valid
//! `custos_token_…` tokens and custos API keys) are reported to that server's leak endpoint,
//! `POST /v1/sys/leaks`, which revokes every one that is live there (except root tokens, which
//! it only marks leaked: the answer says so). No token is needed: holding a credential is the
//! authority to revoke it.

use anyhow::{Context, bail};
use custos_client::{Client, http::Method};
use custos_scanner::Finding;
use serde::Deserialize;
use serde_json::json;

/// Rules whose findings are custos's own credentials.
const CUSTOS_RULES: [&str; 2] = ["custos-token", "custos-api-key"];

/// One credential to report, with where it was first found.
struct Leak<'a> {
    secret: &'a str,
    kind: &'static str,
    location: String,
}

/// What the server said about one credential.
#[derive(Debug, Deserialize)]
struct LeakResult {
    status: String,
    #[serde(default)]
    kind: Option<String>,
    /// Why a live credential was not revoked (a root token is only marked leaked).
    #[serde(default)]
    reason: Option<String>,
}

#[derive(Debug, Deserialize)]
struct LeakAnswer {
    results: Vec<LeakResult>,
}

#[derive(Debug, Deserialize)]
struct Envelope {
    data: LeakAnswer,
}

/// Totals of one revocation run.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Revocation {
    pub(crate) reported: usize,
    pub(crate) revoked: usize,
}

/// The distinct custos credentials among `findings`, in order of first appearance.
fn leaks(findings: &[Finding]) -> Vec<Leak<'_>> {
    let mut seen = std::collections::HashSet::new();
    findings
        .iter()
        .filter(|finding| CUSTOS_RULES.contains(&&*finding.rule_id))
        .filter_map(|finding| {
            let key = custos_core::ApiKey::parse(&finding.secret).ok()?;
            if !seen.insert(finding.secret.as_str()) {
                return None;
            }
            let kind = if key.is_custos_token() {
                "custos_token"
            } else {
                "custos_api_key"
            };
            let location = match &finding.commit {
                Some(commit) => format!("{}:{} (commit {})", finding.path, finding.line, commit.id),
                None => format!("{}:{}", finding.path, finding.line),
            };
            Some(Leak {
                secret: &finding.secret,
                kind,
                location,
            })
        })
        .collect()
}

/// Reports the custos credentials among `findings` to `client`'s server and says on stderr
/// what became of each. Errors when the server cannot be reached or refuses the report.
pub(crate) async fn revoke(client: &Client, findings: &[Finding]) -> anyhow::Result<Revocation> {
    let leaks = leaks(findings);
    let mut totals = Revocation::default();
    if leaks.is_empty() {
        eprintln!("custos scan: no custos credentials found, nothing to revoke");
        return Ok(totals);
    }
    let address = client.address().to_owned();
    for batch in leaks.chunks(custos_engine::MAX_LEAKS_PER_REPORT) {
        let body = json!({
            "leaks": batch
                .iter()
                .map(|leak| json!({
                    "token": leak.secret,
                    "type": leak.kind,
                    "url": leak.location,
                    "source": "custos scan",
                }))
                .collect::<Vec<_>>(),
        });
        let answer: Envelope = client
            .call(Method::POST, "sys/leaks", Some(&body))
            .await
            .with_context(|| format!("reporting leaked credentials to {address}"))?
            .with_context(|| format!("{address} gave an empty answer to the leak report"))?;
        if answer.data.results.len() != batch.len() {
            bail!(
                "{address} answered {} results for {} reported credentials",
                answer.data.results.len(),
                batch.len()
            );
        }
        for (leak, result) in batch.iter().zip(&answer.data.results) {
            totals.reported += 1;
            let what = match result.status.as_str() {
                "revoked" => {
                    totals.revoked += 1;
                    format!(
                        "revoked ({})",
                        result.kind.as_deref().unwrap_or("credential")
                    )
                }
                "not_revoked" => format!(
                    "live on that server and NOT revoked ({}): {}",
                    result.kind.as_deref().unwrap_or("credential"),
                    result.reason.as_deref().unwrap_or("no reason given")
                ),
                "unknown" => {
                    "not live on that server (already revoked, expired, or never issued there)"
                        .to_owned()
                }
                "invalid" => "not accepted as a custos credential".to_owned(),
                other => format!("answered {other:?}"),
            };
            eprintln!("custos scan: {} at {}: {what}", leak.kind, leak.location);
        }
    }
    eprintln!(
        "custos scan: {address} revoked {} of {} custos credential(s) found",
        totals.revoked, totals.reported
    );
    Ok(totals)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(rule: &str, secret: &str, line: u32) -> Finding {
        Finding {
            rule_id: rule.into(),
            description: "d".into(),
            path: "app/.env".into(),
            line,
            column: 1,
            end_line: line,
            end_column: 2,
            secret: secret.into(),
            snippet: String::new(),
            validated: true,
            entropy: 5.0,
            commit: None,
            fingerprint: String::new(),
        }
    }

    #[test]
    fn only_distinct_checksum_valid_custos_credentials_are_reported() {
        let token =
            custos_core::ApiKey::from_random(custos_core::CUSTOS_TOKEN_PREFIX, &[1; 30]).unwrap();
        let key = custos_core::ApiKey::from_random("acme_live", &[2; 30]).unwrap();
        let findings = [
            finding("custos-token", token.as_str(), 1),
            finding("custos-token", token.as_str(), 9),
            finding("custos-api-key", key.as_str(), 2),
            finding("github-pat", "ghp_0123456789012345678901234567890123456", 3),
            finding(
                "custos-token",
                "custos_token_notreallyatokenatallnotreallyatoken",
                4,
            ),
        ];
        let leaks = leaks(&findings);
        let summary: Vec<(&str, &str)> = leaks
            .iter()
            .map(|leak| (leak.kind, leak.location.as_str()))
            .collect();
        assert_eq!(
            summary,
            [
                ("custos_token", "app/.env:1"),
                ("custos_api_key", "app/.env:2")
            ]
        );
    }
}
