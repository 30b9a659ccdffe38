//! Tidy checks: the dependency picture of ARCHITECTURE.md holds, pure crates stay pure, every
//! source file says what it is for, and every crate is on the code map.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// Internal crate → its normal (non-dev) dependencies, from `cargo metadata`.
fn dependency_graph() -> BTreeMap<String, (BTreeSet<String>, BTreeSet<String>)> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(workspace_root())
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let mut graph = BTreeMap::new();
    for package in metadata["packages"].as_array().unwrap() {
        let name = package["name"].as_str().unwrap().to_owned();
        let mut internal = BTreeSet::new();
        let mut external = BTreeSet::new();
        for dependency in package["dependencies"].as_array().unwrap() {
            if !dependency["kind"].is_null() {
                continue; // dev- and build-dependencies may cross boundaries
            }
            let dep = dependency["name"].as_str().unwrap().to_owned();
            if dep.starts_with("custos") {
                internal.insert(dep);
            } else {
                external.insert(dep);
            }
        }
        graph.insert(name, (internal, external));
    }
    graph
}

/// The arrows of ARCHITECTURE.md.
fn allowed_edges() -> BTreeMap<&'static str, &'static [&'static str]> {
    BTreeMap::from([
        (
            "custos",
            &[
                "custos-server",
                "custos-client",
                "custos-storage-sqlite",
                "custos-storage-postgres",
                "custos-scanner",
                "custos-agent",
                "custos-audit",
            ][..],
        ),
        ("custos-server", &["custos-engine", "custos-api"][..]),
        (
            "custos-engine",
            &[
                "custos-storage",
                "custos-crypto",
                "custos-core",
                "custos-policy",
            ][..],
        ),
        ("custos-policy", &["custos-core"][..]),
        ("custos-storage", &["custos-core"][..]),
        ("custos-storage-sqlite", &["custos-storage"][..]),
        ("custos-storage-postgres", &["custos-storage"][..]),
        ("custos-client", &["custos-api"][..]),
        ("custos-agent", &["custos-client"][..]),
        ("custos-scanner", &["custos-core"][..]),
        ("custos-audit", &["custos-crypto"][..]),
        ("custos-api", &[][..]),
        ("custos-core", &[][..]),
        ("custos-crypto", &[][..]),
    ])
}

fn reachable(
    from: &str,
    edges: &BTreeMap<&'static str, &'static [&'static str]>,
) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut stack: Vec<&str> = edges.get(from).copied().unwrap_or_default().to_vec();
    while let Some(next) = stack.pop() {
        if seen.insert(next.to_owned()) {
            stack.extend(edges.get(next).copied().unwrap_or_default());
        }
    }
    seen
}

#[test]
fn dependencies_follow_the_architecture() {
    let edges = allowed_edges();
    for (name, (internal, _)) in dependency_graph() {
        let Some(_) = edges.get(name.as_str()) else {
            panic!(
                "crate {name} is not in the dependency picture; add it to ARCHITECTURE.md and this test"
            );
        };
        let allowed = reachable(&name, &edges);
        for dependency in internal {
            assert!(
                allowed.contains(&dependency),
                "{name} depends on {dependency}, which ARCHITECTURE.md's arrows do not allow"
            );
        }
    }
}

#[test]
fn pure_crates_stay_pure() {
    let graph = dependency_graph();
    let allowed: BTreeMap<&str, &[&str]> = BTreeMap::from([
        ("custos-core", &[][..]),
        // argon2 hashes passwords: ring has no memory-hard hash (ARCHITECTURE.md).
        (
            "custos-crypto",
            &["ring", "zeroize", "thiserror", "argon2"][..],
        ),
        ("custos-policy", &["serde_json", "jiff"][..]),
    ]);
    for (name, permitted) in allowed {
        let (_, external) = &graph[name];
        for dependency in external {
            assert!(
                permitted.contains(&dependency.as_str()),
                "{name} must stay pure but depends on {dependency}"
            );
        }
    }
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_source_file_starts_with_a_module_comment() {
    let root = workspace_root();
    let mut files = Vec::new();
    rust_files(&root.join("crates"), &mut files);
    rust_files(&root.join("fuzz/fuzz_targets"), &mut files);
    let missing: Vec<_> = files
        .iter()
        .filter(|path| {
            let text = std::fs::read_to_string(path).unwrap();
            !text.trim_start().starts_with("//!")
        })
        .map(|path| path.strip_prefix(&root).unwrap().display().to_string())
        .collect();
    assert!(
        missing.is_empty(),
        "files without a leading //! comment: {missing:#?}"
    );
}

#[test]
fn every_crate_is_on_the_code_map() {
    let root = workspace_root();
    let architecture = std::fs::read_to_string(root.join("ARCHITECTURE.md")).unwrap();
    for entry in std::fs::read_dir(root.join("crates")).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        assert!(
            architecture.contains(&format!("`crates/{name}`")),
            "ARCHITECTURE.md has no code-map entry for crates/{name}"
        );
    }
}
