//! Sinks (text, JSON lines, SARIF validated against the 2.1.0 schema) and baselines.

use std::fs;
use std::process::Command;

use custos_scanner::{Baseline, Finding, JsonLinesSink, NoProgress, OutputFormat, sink_for};

use crate::util::{custos_key, github_token, scanner};

fn sample_findings() -> Vec<Finding> {
    let text = format!(
        "GITHUB_TOKEN={}\nkey = \"{}\"\npath/with space = x\n",
        github_token(200),
        custos_key("acme_live", 201)
    );
    let findings = scanner().scan_bytes("dir/with space/config.env", text.as_bytes());
    assert_eq!(findings.len(), 2);
    findings
}

fn render(format: OutputFormat, findings: &[Finding], show_secrets: bool) -> String {
    let mut out = Vec::new();
    {
        let mut sink = sink_for(format, Box::new(&mut out), show_secrets);
        for finding in findings {
            sink.finding(finding).unwrap();
        }
        sink.finish().unwrap();
    }
    String::from_utf8(out).unwrap()
}

#[test]
fn text_output_redacts_secrets_unless_asked() {
    let findings = sample_findings();
    let redacted = render(OutputFormat::Text, &findings, false);
    assert!(!redacted.contains(&findings[0].secret));
    assert!(redacted.contains("dir/with space/config.env:1:14: github-pat-token"));
    assert!(redacted.contains("[checksum valid]"));
    let shown = render(OutputFormat::Text, &findings, true);
    assert!(shown.contains(&findings[0].secret));
}

#[test]
fn json_lines_have_one_object_per_finding() {
    let findings = sample_findings();
    let mut out = Vec::new();
    {
        let mut sink = JsonLinesSink::new(&mut out, false);
        for finding in &findings {
            custos_scanner::FindingSink::finding(&mut sink, finding).unwrap();
        }
    }
    let text = String::from_utf8(out).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["rule_id"], "github-pat-token");
    assert_eq!(lines[0]["line"], 1);
    assert_eq!(lines[0]["redacted"], true);
    assert_ne!(lines[0]["secret"], findings[0].secret.as_str());
    assert!(!text.contains(&findings[1].secret));
    assert_eq!(lines[1]["rule_id"], "custos-api-key");
    assert_eq!(lines[1]["validated"], true);
    assert_eq!(lines[1]["fingerprint"], findings[1].fingerprint.as_str());
}

#[test]
fn sarif_output_validates_against_the_2_1_0_schema() {
    let findings = sample_findings();
    let sarif = render(OutputFormat::Sarif, &findings, false);
    let log: serde_json::Value = serde_json::from_str(&sarif).unwrap();
    assert_eq!(log["version"], "2.1.0");
    let run = &log["runs"][0];
    assert_eq!(run["tool"]["driver"]["name"], "custos");
    let results = run["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    for result in results {
        let index = result["ruleIndex"].as_u64().unwrap() as usize;
        assert_eq!(
            run["tool"]["driver"]["rules"][index]["id"],
            result["ruleId"]
        );
        let uri = result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
            .as_str()
            .unwrap();
        assert_eq!(uri, "dir/with%20space/config.env");
    }
    assert!(!sarif.contains(&findings[0].secret));

    // Full schema validation with Python's jsonschema. `.ci/run` provides it in the venv named by
    // CUSTOS_TEST_PYTHON, where a missing module fails the test; on a laptop without it only the
    // structural checks above run.
    let python = std::env::var("CUSTOS_TEST_PYTHON").ok();
    let required = python.is_some();
    let schema = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../testdata/sarif/sarif-schema-2.1.0.json"
    );
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("out.sarif");
    fs::write(&log_path, &sarif).unwrap();
    let script = "import json,sys,jsonschema\nschema=json.load(open(sys.argv[1]))\njsonschema.validators.validator_for(schema)(schema).validate(json.load(open(sys.argv[2])))\nprint('valid')";
    match Command::new(python.as_deref().unwrap_or("python3"))
        .args(["-c", script, schema])
        .arg(&log_path)
        .output()
    {
        Ok(output)
            if !required
                && String::from_utf8_lossy(&output.stderr)
                    .contains("No module named 'jsonschema'") =>
        {
            eprintln!("python jsonschema missing: SARIF checked structurally only");
        }
        Ok(output) => assert!(
            output.status.success() && output.stdout.starts_with(b"valid"),
            "SARIF does not validate: {}",
            String::from_utf8_lossy(&output.stderr)
        ),
        Err(error) if !required => {
            eprintln!("python3 missing ({error}): SARIF checked structurally only");
        }
        Err(error) => panic!("CUSTOS_TEST_PYTHON cannot run: {error}"),
    }
}

#[test]
fn empty_sarif_log_is_valid_json_with_no_results() {
    let sarif = render(OutputFormat::Sarif, &[], false);
    let log: serde_json::Value = serde_json::from_str(&sarif).unwrap();
    assert_eq!(log["runs"][0]["results"].as_array().map(Vec::len), Some(0));
}

#[test]
fn baseline_suppresses_exactly_the_known_findings_across_line_moves() {
    let dir = tempfile::tempdir().unwrap();
    let known_a = github_token(210);
    let known_b = custos_key("acme", 211);
    let file = dir.path().join("app.env");
    fs::write(&file, format!("A={known_a}\nB={known_b}\n")).unwrap();
    let scanner = scanner();
    let first = scanner
        .scan_paths(&[dir.path().to_path_buf()], &NoProgress)
        .unwrap();
    assert_eq!(first.findings.len(), 2);
    let baseline = Baseline::parse(&Baseline::render(&first.findings)).unwrap();
    assert_eq!(baseline.len(), 2);

    // Lines move, one known secret stays, and a new one arrives.
    let new = github_token(212);
    fs::write(
        &file,
        format!("# moved\n\n\nB={known_b}\nA={known_a}\nC={new}\n"),
    )
    .unwrap();
    let mut second = scanner
        .scan_paths(&[dir.path().to_path_buf()], &NoProgress)
        .unwrap();
    assert_eq!(second.findings.len(), 3);
    assert_eq!(baseline.filter(&mut second.findings), 2);
    assert_eq!(second.findings.len(), 1);
    assert_eq!(second.findings[0].secret, new);
    assert_eq!(second.findings[0].line, 6);
}

#[test]
fn malformed_baselines_are_rejected() {
    assert!(Baseline::parse("{}").is_err());
    assert!(Baseline::parse("{\"version\": 2, \"findings\": []}").is_err());
    assert!(Baseline::parse("not json").is_err());
    assert!(
        Baseline::parse("{\"version\": 1, \"findings\": []}")
            .unwrap()
            .is_empty()
    );
}
