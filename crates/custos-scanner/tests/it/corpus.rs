//! The labelled corpus: positives generated from `corpus/templates.json` for every rule with
//! seeded random values, and negatives (placeholders, docs examples, hashes, UUIDs, base64
//! blobs, minified JS, lock files, checksum-invalid look-alikes, public keys).
//!
//! Precision and recall are computed per finding over the whole corpus and must stay at or
//! above [`MIN_PRECISION`] and [`MIN_RECALL`]. Set `CUSTOS_WRITE_CORPUS=DIR` to keep the
//! corpus and its `labels.json` (the benchmark scores other scanners with them).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use custos_core::{ApiKey, crc32};
use custos_scanner::{NoProgress, RuleSet};

use crate::util::{Rng, scanner};

/// Minimum precision on the corpus: true positives / all findings.
const MIN_PRECISION: f64 = 0.98;
/// Minimum recall on the corpus: positives found by their rule / all positives.
const MIN_RECALL: f64 = 0.98;
/// Generated variants per template.
const VARIANTS: usize = 3;

const B62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const HEX: &[u8] = b"0123456789abcdef";
const HEX_UPPER: &[u8] = b"0123456789ABCDEF";
const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const B64_URL: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";
const LOWER: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
const UPPER: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
const ALPHA: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const DIGITS: &[u8] = b"0123456789";
const B32: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
const B32_LOWER: &[u8] = b"abcdefghijklmnopqrstuvwxyz234567";
const BECH32: &[u8] = b"QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L";
const BECH32_LOWER: &[u8] = b"qpzry9x8gf2tvdw0s3jn54khce6mua7l";
const BASE58: &[u8] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
const PASSWORD: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789!#%^*";

/// Innocuous lines around each positive; none of them may trigger a rule.
const FILLER: &[&str] = &[
    "import os",
    "from typing import Optional",
    "def handler(event, context):",
    "    return {\"statusCode\": 200}",
    "# Configuration for the service",
    "LOG_LEVEL=info",
    "PORT=8080",
    "timeout: 30s",
    "retries: 3",
    "fn main() {",
    "}",
    "const items = list.map((item) => item.id);",
    "  - name: build",
    "    run: cargo build --release",
    "<div class=\"header\">Welcome</div>",
    "SELECT id, name FROM users WHERE active = true;",
];

fn base62_padded6(mut value: u32) -> String {
    let mut out = [b'0'; 6];
    for slot in out.iter_mut().rev() {
        *slot = B62[(value % 62) as usize];
        value /= 62;
    }
    String::from_utf8(out.to_vec()).unwrap()
}

fn github_token(rng: &mut Rng, prefix: &str) -> String {
    let random = rng.string(B62, 30);
    format!(
        "{prefix}_{random}{}",
        base62_padded6(crc32(random.as_bytes()))
    )
}

fn pem(rng: &mut Rng, kind: &str) -> String {
    let mut out = format!("-----BEGIN {kind}-----\n");
    if kind.starts_with("PGP") {
        out.push_str("Version: GnuPG v2\n\n");
    }
    for _ in 0..12 {
        out.push_str(&rng.string(B64, 64));
        out.push('\n');
    }
    out.push_str(&format!("{}==\n-----END {kind}-----", rng.string(B64, 30)));
    out
}

fn expand(template: &str, rng: &mut Rng) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open].replace("}}", "}"));
        rest = &rest[open..];
        if rest.starts_with("{{") {
            out.push('{');
            rest = &rest[2..];
            continue;
        }
        let close = rest.find('}').unwrap();
        let spec = &rest[1..close];
        rest = &rest[close + 1..];
        let (kind, arg) = spec.split_once(':').unwrap_or((spec, ""));
        let len = || arg.parse::<usize>().unwrap();
        let value = match kind {
            "lit" => arg.to_owned(),
            "b62" => rng.string(B62, len()),
            "hex" => rng.string(HEX, len()),
            "HEX" => rng.string(HEX_UPPER, len()),
            "b64" => rng.string(B64, len()),
            "b64u" => rng.string(B64_URL, len()),
            "low" => rng.string(LOWER, len()),
            "up" => rng.string(UPPER, len()),
            "alpha" => rng.string(ALPHA, len()),
            "dig" => rng.string(DIGITS, len()),
            "b32" => rng.string(B32, len()),
            "b32l" => rng.string(B32_LOWER, len()),
            "bech" => rng.string(BECH32, len()),
            "bechl" => rng.string(BECH32_LOWER, len()),
            "b58" => rng.string(BASE58, len()),
            "pw" => format!(
                "{}{}{}",
                rng.string(ALPHA, 1),
                rng.string(DIGITS, 1),
                rng.string(PASSWORD, len() - 2)
            ),
            "uuid" => format!(
                "{}-{}-4{}-a{}-{}",
                rng.string(HEX, 8),
                rng.string(HEX, 4),
                rng.string(HEX, 3),
                rng.string(HEX, 3),
                rng.string(HEX, 12)
            ),
            "gh" => github_token(rng, arg),
            "custos" => ApiKey::from_random(arg, &rng.bytes::<30>())
                .unwrap()
                .as_str()
                .to_owned(),
            "pem" => pem(rng, arg),
            "jwt" => format!(
                "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJ{}.{}",
                rng.string(B64_URL, 60),
                rng.string(B64_URL, 43)
            ),
            "gcpsa" => format!(
                "{{\n  \"type\": \"service_account\",\n  \"project_id\": \"proj-{}\",\n  \"private_key_id\": \"{}\",\n  \"private_key\": \"-----BEGIN PRIVATE KEY-----\\n{}\\n{}\\n-----END PRIVATE KEY-----\\n\",\n  \"client_email\": \"svc@proj.iam.gserviceaccount.com\"\n}}",
                rng.string(LOWER, 6),
                rng.string(HEX, 40),
                rng.string(B64, 64),
                rng.string(B64, 64)
            ),
            "putty" => format!(
                "PuTTY-User-Key-File-2: ssh-rsa\nEncryption: none\nComment: imported-openssh-key\nPublic-Lines: 2\n{}\n{}\nPrivate-Lines: 2\n{}\n{}\nPrivate-MAC: {}",
                rng.string(B64, 64),
                rng.string(B64, 40),
                rng.string(B64, 64),
                rng.string(B64, 40),
                rng.string(HEX, 40)
            ),
            other => panic!("unknown template kind {other}"),
        };
        out.push_str(&value);
    }
    out.push_str(&rest.replace("}}", "}"));
    out
}

/// One generated file and what it must yield.
struct Sample {
    path: String,
    content: String,
    /// The rule expected to fire, or `None` for a negative.
    expected: Option<String>,
}

fn positives(rng: &mut Rng) -> Vec<Sample> {
    let templates: BTreeMap<String, Vec<String>> =
        serde_json::from_str(include_str!("corpus/templates.json")).unwrap();
    let mut samples = Vec::new();
    for (rule, list) in &templates {
        for (index, template) in list.iter().enumerate() {
            for variant in 0..VARIANTS {
                let mut content = String::new();
                for _ in 0..rng.below(4) {
                    content.push_str(rng.pick(FILLER));
                    content.push('\n');
                }
                content.push_str(&expand(template, rng));
                content.push('\n');
                for _ in 0..rng.below(4) {
                    content.push_str(rng.pick(FILLER));
                    content.push('\n');
                }
                let extension = rng.pick(&["env", "py", "yaml", "json", "ts", "sh", "txt"]);
                samples.push(Sample {
                    path: format!("positive/{rule}/{index}-{variant}.{extension}"),
                    content,
                    expected: Some(rule.clone()),
                });
            }
        }
    }
    samples
}

/// Negative templates: each must produce no finding at all.
const NEGATIVE_LINES: &[&str] = &[
    // Placeholders and docs examples.
    "api_key = \"YOUR_API_KEY\"",
    "API_KEY=your-api-key-here",
    "password = \"changeme\"",
    "password: \"<your-password>\"",
    "secret = \"<your-secret-here>\"",
    "token: ${GITHUB_TOKEN}",
    "GITHUB_TOKEN=${{ secrets.GITHUB_TOKEN }}",
    "password: \"{{ .Values.db.password }}\"",
    "password = \"********\"",
    "client_secret = \"xxxxxxxxxxxxxxxxxxxxxxxx\"",
    "AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE",
    "AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "GITHUB_TOKEN=ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    "stripe.api_key = \"sk_test_4eC39HqLyjWDarjtT1zdp7dc\"",
    "SLACK_TOKEN=xoxb-not-a-real-token-this-will-not-work",
    "Authorization: Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c",
    "curl -H \"Authorization: Bearer $TOKEN\" https://api.example.com",
    "curl -H 'Authorization: Bearer <token>' https://api.example.com",
    "export OPENAI_API_KEY=\"sk-...\"",
    "DATABASE_URL=postgres://user:password@localhost:5432/app",
    "DATABASE_URL=postgres://${DB_USER}:${DB_PASSWORD}@db:5432/app",
    "REDIS_URL=redis://:changeme@localhost:6379",
    "mongodb://<username>:<password>@cluster0.mongodb.net/test",
    "https://user:pass@example.com/path",
    "password = \"\"",
    "password=%(password)s",
    "secret_key_base: <%= ENV[\"SECRET_KEY_BASE\"] %>",
    "-----BEGIN PRIVATE KEY-----\\n...\\n-----END PRIVATE KEY-----",
    // Code that names secrets without containing them.
    "api_key = os.environ[\"API_KEY\"]",
    "password = get_password()",
    "token = request.headers.get(\"X-Auth-Token\")",
    "secret_key = settings.SECRET_KEY",
    "const token = await getToken();",
    "password_field = forms.CharField(widget=forms.PasswordInput)",
    "TOKEN_TTL_SECONDS = 86400",
    "max_tokens = 4096",
    "token_type = \"bearer\"",
    "password_hash = bcrypt.hashpw(password, bcrypt.gensalt())",
    "let api_key = config.api_key.clone();",
    "secret_name: my-app-secret",
    "token_url: https://auth.example.com/oauth/token",
    "password_policy: strong",
    "secretRef: db-credentials",
    "private_key_path = /etc/ssl/private/server.key",
    "token = self.tokenizer.encode(text)",
    "password: process.env.DB_PASSWORD",
    "API_KEY=$API_KEY",
    "passwordless_login_enabled: true",
    "SECRET_KEY_FILE=/run/secrets/secret_key",
    // Placeholders and public halves of formats with a distinctive prefix.
    "NEON_API_KEY=napi_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    "napi_status status = napi_create_string_utf8(env, buffer, NAPI_AUTO_LENGTH, &result);",
    "[Interface]\nPrivateKey = <contents of privatekey>\nListenPort = 51820",
    "PostUp = wg set %i private-key /etc/wireguard/privatekey",
    "LANGFUSE_SECRET_KEY=sk-lf-...",
    "RIOT_API_KEY=RGAPI-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx",
    "TAVILY_API_KEY=tvly-YOUR_API_KEY",
    "NVIDIA_API_KEY=nvapi-<your-key>",
    "untrusted comment: minisign public key 5D2F09A4C1B3E687\nRWSH5z3rQm9bVt0xKd8LpYc2Nw7uEf4gJa6TiOs1kZlMvXyBqUhC",
    "xpub661MyMwAqRbcFtXgS5sYJABqqG9YLmC4Q1Rdap9gSE8NqtwybGhePY2gZ29ESFjqJoCu1Rupje8YtGqsefD265TMg7usUDFdp6W1EGMcet8",
    "PADDLE_API_KEY=pdl_sdbx_apikey_...",
    "MIDTRANS_SERVER_KEY=SB-Mid-server-xxxxxxxxxxxxxxxxxxxxxxxx",
    "TWITCH_CLIENT_SECRET=${TWITCH_CLIENT_SECRET}",
    "jenkins_api_token: \"{{ vault_jenkins_api_token }}\"",
    "ALTER TABLE users ADD CONSTRAINT pk_users PRIMARY KEY (id);",
    "The recommended dose is 5 mg; dosefactor = 0.25",
    "#include \"csb_v1_f2126_f2165_platform_source_boundary_pc34_compat.h\"",
    "HCLOUD_TOKEN=<hetzner-cloud-api-token>",
    "ONESIGNAL_REST_API_KEY=os_v2_app_...",
    "STYTCH_BUSINESS_SECRET=secret-live-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx=",
    "#define CXTP_max(a, b) ((a) > (b) ? (a) : (b))",
    "AKLT = plaquette_AKLT(Sigma); // Affleck-Kennedy-Lieb-Tasaki state",
    "const PLATFORM_ENTRY_CODE_RE = /^RPA_[A-Z0-9][A-Z0-9_]*$/;",
    "HELICONE_API_KEY=sk-helicone-...",
    "WAKATIME_API_KEY=waka_xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx",
    "SPOTIFY_CLIENT_SECRET=<spotify-client-secret>",
    "Claude OAuth tokens look like `sk-ant-oat01-...` (access) and `sk-ant-ort01-...` (refresh).",
];

fn negatives(rng: &mut Rng) -> Vec<Sample> {
    let mut samples = Vec::new();
    let mut push = |path: String, content: String| {
        samples.push(Sample {
            path,
            content,
            expected: None,
        });
    };
    for (index, line) in NEGATIVE_LINES.iter().enumerate() {
        push(
            format!("negative/placeholder/{index}.txt"),
            format!("{line}\n"),
        );
    }
    for index in 0..40 {
        // Hashes, commit ids, UUIDs.
        let content = format!(
            "sha256: {}\ncommit {}\nmd5 {}  release.tar.gz\nid: {}\nrequest_id = \"{}\"\nhttps://github.com/org/repo/commit/{}\n",
            rng.string(HEX, 64),
            rng.string(HEX, 40),
            rng.string(HEX, 32),
            expand("{uuid}", rng),
            expand("{uuid}", rng),
            rng.string(HEX, 40),
        );
        push(format!("negative/hashes/{index}.txt"), content);
        // Base64 blobs.
        let content = format!(
            "<img src=\"data:image/png;base64,{}\">\nconst FONT = \"{}==\";\n",
            rng.string(B64, 1200),
            rng.string(B64, 2000)
        );
        push(format!("negative/base64/{index}.html"), content);
        // Checksum-invalid look-alikes of checksummed formats.
        let content = format!(
            "GITHUB_TOKEN=ghp_{}\nGH_OAUTH=gho_{}\nACME_KEY=acme_live_{}\nCUSTOS_TOKEN=custos_token_{}\n",
            rng.string(B62, 36),
            rng.string(B62, 36),
            rng.string(B62, 36),
            rng.string(B62, 36)
        );
        push(format!("negative/lookalike/{index}.env"), content);
        // Public material that is meant to be shared.
        let content = format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n{}\n-----END PUBLIC KEY-----\nssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI{} deploy@ci\n-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
            rng.string(B64, 64),
            rng.string(B64, 40),
            rng.string(B64, 43),
            rng.string(B64, 64)
        );
        push(format!("negative/public/{index}.pem"), content);
    }
    for index in 0..20 {
        // Minified JavaScript with secret-ish identifiers but no secrets.
        let mut js = String::from("!function(e,t){\"use strict\";");
        for _ in 0..200 {
            let a = rng.string(b"abcdefghijklmnopqrstuvwxyz", 1);
            let b = rng.string(b"abcdefghijklmnopqrstuvwxyz", 2);
            js.push_str(&format!(
                "var {a}{b}=function({a}){{return {a}.token={a}.token||null,{a}.password={b}.pwd,{a}.apiKey=n.apiKey,{a}.secret=void 0,this.{b}({a})}};"
            ));
        }
        js.push_str("}(window,document);\n");
        push(format!("negative/minified/{index}.min.js"), js);
        // Lock files.
        let mut lock =
            String::from("{\n  \"name\": \"app\",\n  \"lockfileVersion\": 3,\n  \"packages\": {\n");
        for _ in 0..50 {
            let name = rng.string(b"abcdefghijklmnopqrstuvwxyz", 8);
            lock.push_str(&format!(
                "    \"node_modules/{name}\": {{\n      \"version\": \"1.2.3\",\n      \"resolved\": \"https://registry.npmjs.org/{name}/-/{name}-1.2.3.tgz\",\n      \"integrity\": \"sha512-{}==\"\n    }},\n",
                rng.string(B64, 86)
            ));
        }
        lock.push_str("  }\n}\n");
        push(format!("negative/lock/{index}/package-lock.json"), lock);
        let mut cargo_lock = String::from("version = 4\n\n");
        for _ in 0..50 {
            cargo_lock.push_str(&format!(
                "[[package]]\nname = \"{}\"\nversion = \"0.1.0\"\nsource = \"registry+https://github.com/rust-lang/crates.io-index\"\nchecksum = \"{}\"\n\n",
                rng.string(b"abcdefghijklmnopqrstuvwxyz", 8),
                rng.string(HEX, 64)
            ));
        }
        push(format!("negative/lock/{index}/Cargo.lock"), cargo_lock);
        let mut go_sum = String::new();
        for _ in 0..50 {
            go_sum.push_str(&format!(
                "github.com/{}/{} v1.0.0 h1:{}=\n",
                rng.string(b"abcdefghijklmnopqrstuvwxyz", 6),
                rng.string(b"abcdefghijklmnopqrstuvwxyz", 6),
                rng.string(B64, 43)
            ));
        }
        push(format!("negative/lock/{index}/go.sum"), go_sum);
    }
    samples
}

fn corpus(seed: u64) -> Vec<Sample> {
    let mut rng = Rng::new(seed);
    let mut samples = positives(&mut rng);
    samples.extend(negatives(&mut rng));
    samples
}

fn write_corpus(root: &Path, samples: &[Sample]) {
    for sample in samples {
        let path = root.join(&sample.path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, &sample.content).unwrap();
    }
    let labels: BTreeMap<&str, Option<&str>> = samples
        .iter()
        .map(|sample| (sample.path.as_str(), sample.expected.as_deref()))
        .collect();
    std::fs::write(
        root.join("labels.json"),
        serde_json::to_string_pretty(&labels).unwrap(),
    )
    .unwrap();
}

#[test]
fn every_rule_has_a_positive_template() {
    let templates: BTreeMap<String, Vec<String>> =
        serde_json::from_str(include_str!("corpus/templates.json")).unwrap();
    let rules = RuleSet::defaults().unwrap();
    let ids: BTreeSet<&str> = rules.rules().iter().map(|rule| rule.id.as_str()).collect();
    let missing: Vec<&&str> = ids
        .iter()
        .filter(|id| !templates.contains_key(**id))
        .collect();
    assert!(missing.is_empty(), "rules without templates: {missing:?}");
    let unknown: Vec<&String> = templates
        .keys()
        .filter(|id| !ids.contains(id.as_str()))
        .collect();
    assert!(
        unknown.is_empty(),
        "templates for unknown rules: {unknown:?}"
    );
}

#[test]
fn precision_and_recall_on_the_labelled_corpus_meet_the_thresholds() {
    let samples = corpus(0x5eed_c057);
    let keep = std::env::var_os("CUSTOS_WRITE_CORPUS");
    let temp = tempfile::tempdir().unwrap();
    let root = keep.as_ref().map_or(temp.path(), Path::new);
    write_corpus(root, &samples);
    let outcome = scanner()
        .scan_paths(&[root.to_path_buf()], &NoProgress)
        .unwrap();
    assert!(outcome.problems.is_empty(), "{:?}", outcome.problems);

    let prefix = format!("{}/", root.display());
    let mut by_path: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for finding in &outcome.findings {
        let path = finding
            .path
            .strip_prefix(&prefix)
            .unwrap_or(&finding.path)
            .to_owned();
        by_path
            .entry(path)
            .or_default()
            .push(finding.rule_id.to_string());
    }
    let (mut true_positives, mut false_positives, mut false_negatives) = (0usize, 0usize, 0usize);
    let mut misses = Vec::new();
    let mut noise = Vec::new();
    for sample in &samples {
        let found = by_path.remove(&sample.path).unwrap_or_default();
        match &sample.expected {
            Some(rule) => {
                if found.contains(rule) {
                    true_positives += 1;
                } else {
                    false_negatives += 1;
                    misses.push(format!("{} (found {found:?})", sample.path));
                }
                let extra = found.iter().filter(|id| *id != rule).count();
                false_positives += extra;
                if extra > 0 {
                    noise.push(format!("{}: {found:?}", sample.path));
                }
            }
            None => {
                false_positives += found.len();
                if !found.is_empty() {
                    noise.push(format!("{}: {found:?}", sample.path));
                }
            }
        }
    }
    let precision = true_positives as f64 / (true_positives + false_positives).max(1) as f64;
    let recall = true_positives as f64 / (true_positives + false_negatives).max(1) as f64;
    println!(
        "corpus: {} files, {true_positives} TP, {false_positives} FP, {false_negatives} FN, precision {precision:.4}, recall {recall:.4}",
        samples.len()
    );
    println!("misses: {misses:#?}\nnoise: {noise:#?}");
    assert!(
        recall >= MIN_RECALL,
        "recall {recall:.4} < {MIN_RECALL}; misses: {misses:#?}"
    );
    assert!(
        precision >= MIN_PRECISION,
        "precision {precision:.4} < {MIN_PRECISION}; noise: {noise:#?}"
    );
}
