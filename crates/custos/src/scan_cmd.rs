//! `custos scan`: the command-line front of `custos-scanner`.
//!
//! Exit codes: 0 when no finding remains (after inline allows and the baseline), 1 when
//! findings remain, 2 on errors (bad arguments, unreadable rules or baseline, missing
//! paths, git failures). Files that cannot be read are reported on stderr and skipped;
//! they do not change the exit code.

use std::fs;
use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

use anyhow::{Context, bail};
use custos_scanner::{
    Baseline, Detector, OutputFormat, Progress, RuleSet, ScanOptions, ScanOutcome, Scanner,
    sink_for,
};

/// Find leaked secrets: API keys, tokens, private keys, passwords in URLs, custos keys.
///
/// Scans files and directories (honouring .gitignore and .custosignore, skipping binaries,
/// archives and files over --max-file-size), stdin (`-`), a repository's whole history
/// (--git) or the changes staged for the next commit (--staged).
/// Silence a line with a `custos:allow` (or `gitleaks:allow`) comment; accept known findings
/// with --baseline.
/// Exit status: 0 nothing found, 1 findings, 2 error.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct ScanArgs {
    #[command(subcommand)]
    command: Option<ScanCommand>,

    /// Files or directories to scan, or `-` for stdin. With --git or --staged: the
    /// repository (one path). Default: the current directory.
    paths: Vec<PathBuf>,

    /// Scan every commit on every branch and tag; only lines each commit added are
    /// checked, and each secret is reported once, with the commit that introduced it.
    #[arg(long, conflicts_with = "staged")]
    git: bool,

    /// Scan only the changes staged for the next commit (what the pre-commit hook runs).
    #[arg(long)]
    staged: bool,

    /// Output format: human text, JSON lines, or SARIF 2.1.0 for code-scanning tools.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,

    /// Write findings to FILE instead of stdout.
    #[arg(long, short, value_name = "FILE")]
    output: Option<PathBuf>,

    /// Extra rule file: custos or gitleaks TOML (a `.gitleaks.toml` is converted, with a
    /// warning for what custos cannot apply); may be repeated. A rule with the id of a
    /// default rule replaces it. See docs/scanner.md for the formats.
    #[arg(long = "rules", value_name = "FILE")]
    rules: Vec<PathBuf>,

    /// Use only the rules from --rules, not the embedded defaults.
    #[arg(long, requires = "rules")]
    no_default_rules: bool,

    /// Ignore findings listed in this baseline file (see --write-baseline).
    #[arg(long, value_name = "FILE")]
    baseline: Option<PathBuf>,

    /// Write all current findings to FILE as a baseline and exit 0.
    #[arg(long, value_name = "FILE")]
    write_baseline: Option<PathBuf>,

    /// Print secrets in full instead of redacted.
    #[arg(long)]
    show_secrets: bool,

    /// Skip files larger than this (bytes; K, M and G suffixes allowed).
    #[arg(long, value_name = "SIZE", default_value = "32M", value_parser = parse_size)]
    max_file_size: u64,

    /// Worker threads (default: one per core).
    #[arg(long, value_name = "N")]
    threads: Option<usize>,

    /// Never draw the progress bar (it is drawn only when stderr is a terminal).
    #[arg(long)]
    no_progress: bool,

    /// After the scan, report the custos tokens and API keys found (checksum-valid ones only)
    /// to the custos server at URL, which revokes every one that is live there. Needs no
    /// token: holding a credential is the authority to revoke it. Exit status 2 if the
    /// server cannot be reached.
    #[arg(long, value_name = "URL", conflicts_with = "write_baseline")]
    revoke_with: Option<String>,

    /// PEM bundle of CAs that signed the --revoke-with server's certificate
    /// [env: CUSTOS_CACERT or VAULT_CACERT]
    #[arg(long, value_name = "FILE", requires = "revoke_with")]
    ca_cert: Option<PathBuf>,
}

#[derive(Debug, clap::Subcommand)]
enum ScanCommand {
    /// Install a git pre-commit hook that runs `custos scan --staged`.
    InstallHook {
        /// The repository (default: the current directory).
        repo: Option<PathBuf>,
        /// Replace an existing pre-commit hook.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Format {
    Text,
    Json,
    Sarif,
}

impl From<Format> for OutputFormat {
    fn from(format: Format) -> Self {
        match format {
            Format::Text => Self::Text,
            Format::Json => Self::Json,
            Format::Sarif => Self::Sarif,
        }
    }
}

fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (digits, multiplier) = match text.char_indices().last() {
        Some((index, 'k' | 'K')) => (&text[..index], 1u64 << 10),
        Some((index, 'm' | 'M')) => (&text[..index], 1 << 20),
        Some((index, 'g' | 'G')) => (&text[..index], 1 << 30),
        _ => (text, 1),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|value| value.checked_mul(multiplier))
        .ok_or_else(|| format!("invalid size {text:?} (examples: 1048576, 512K, 32M, 1G)"))
}

struct Bar(indicatif::ProgressBar);

impl Progress for Bar {
    fn advance(&self, bytes: u64) {
        self.0.inc(bytes);
    }
}

fn progress_bar(hidden: bool) -> indicatif::ProgressBar {
    if hidden || !io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new_spinner();
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{spinner} scanning: {bytes} ({bytes_per_sec}), {elapsed}",
    ) {
        bar.set_style(style);
    }
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    bar
}

/// Runs `custos scan`.
pub(crate) async fn run(args: ScanArgs) -> anyhow::Result<ExitCode> {
    if let Some(ScanCommand::InstallHook { repo, force }) = &args.command {
        return install_hook(repo.as_deref().unwrap_or(Path::new(".")), *force);
    }
    let rules = load_rules(&args)?;
    let detector = Detector::new(&rules).context("compiling rules")?;
    let options = ScanOptions {
        max_file_size: args.max_file_size,
        threads: args.threads.unwrap_or(0),
    };
    let scanner = Scanner::new(detector, options);
    let baseline = match &args.baseline {
        Some(path) => {
            let text = fs::read_to_string(path)
                .with_context(|| format!("reading baseline {}", path.display()))?;
            Some(Baseline::parse(&text).with_context(|| format!("baseline {}", path.display()))?)
        }
        None => None,
    };

    let bar = progress_bar(args.no_progress);
    let progress = Bar(bar.clone());
    let started = Instant::now();
    let mut outcome = scan(&scanner, &args, &progress)?;
    bar.finish_and_clear();
    let elapsed = started.elapsed();

    for problem in &outcome.problems {
        if problem.path.is_empty() {
            eprintln!("custos scan: warning: {}", problem.message);
        } else {
            eprintln!(
                "custos scan: warning: {}: {}",
                problem.path, problem.message
            );
        }
    }
    if let Some(path) = &args.write_baseline {
        fs::write(path, Baseline::render(&outcome.findings))
            .with_context(|| format!("writing baseline {}", path.display()))?;
        eprintln!(
            "custos scan: wrote {} finding(s) to baseline {}",
            outcome.findings.len(),
            path.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let suppressed = baseline
        .as_ref()
        .map_or(0, |baseline| baseline.filter(&mut outcome.findings));

    write_findings(&args, &outcome)?;
    summary(&outcome, suppressed, elapsed);
    if let Some(address) = &args.revoke_with {
        let client = crate::connection::client_for(
            Some(address.clone()),
            None,
            crate::connection::TlsFiles {
                ca_cert: args.ca_cert.clone(),
                ..Default::default()
            },
        )?;
        crate::scan_revoke::revoke(&client, &outcome.findings).await?;
    }
    Ok(if outcome.findings.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn load_rules(args: &ScanArgs) -> anyhow::Result<RuleSet> {
    let mut rules = if args.no_default_rules {
        RuleSet::default()
    } else {
        RuleSet::defaults().context("loading the default rules")?
    };
    for path in &args.rules {
        rules.add_toml_file(path).context("loading rules")?;
    }
    for warning in rules.warnings() {
        eprintln!("custos scan: warning: {warning}");
    }
    Ok(rules)
}

fn scan(
    scanner: &Scanner,
    args: &ScanArgs,
    progress: &dyn Progress,
) -> anyhow::Result<ScanOutcome> {
    if args.git || args.staged {
        let repo = match args.paths.as_slice() {
            [] => Path::new("."),
            [repo] => repo.as_path(),
            _ => bail!("--git and --staged take one repository path"),
        };
        return Ok(if args.git {
            scanner.scan_git_history(repo, progress)?
        } else {
            scanner.scan_staged(repo, progress)?
        });
    }
    if args.paths.iter().any(|path| path.as_os_str() == "-") {
        if args.paths.len() > 1 {
            bail!("`-` (stdin) cannot be combined with other paths");
        }
        return Ok(scanner.scan_reader("<stdin>", io::stdin().lock(), progress)?);
    }
    let paths = if args.paths.is_empty() {
        vec![PathBuf::from(".")]
    } else {
        args.paths.clone()
    };
    Ok(scanner.scan_paths(&paths, progress)?)
}

fn write_findings(args: &ScanArgs, outcome: &ScanOutcome) -> anyhow::Result<()> {
    let writer: Box<dyn Write> = match &args.output {
        Some(path) => Box::new(io::BufWriter::new(
            fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        )),
        None => Box::new(io::BufWriter::new(io::stdout().lock())),
    };
    let mut sink = sink_for(args.format.into(), writer, args.show_secrets);
    for finding in &outcome.findings {
        sink.finding(finding).context("writing findings")?;
    }
    sink.finish().context("writing findings")?;
    Ok(())
}

fn summary(outcome: &ScanOutcome, suppressed: usize, elapsed: std::time::Duration) {
    let seconds = elapsed.as_secs_f64().max(1e-6);
    #[expect(clippy::cast_precision_loss, reason = "an approximate rate is enough")]
    let megabytes = outcome.bytes as f64 / 1e6;
    let baseline = if suppressed > 0 {
        format!(", {suppressed} known in baseline")
    } else {
        String::new()
    };
    eprintln!(
        "custos scan: {} finding(s){baseline}; {} input(s), {megabytes:.1} MB in {seconds:.2} s ({:.0} MB/s)",
        outcome.findings.len(),
        outcome.files,
        megabytes / seconds,
    );
}

fn install_hook(repo: &Path, force: bool) -> anyhow::Result<ExitCode> {
    let output = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["rev-parse", "--git-path", "hooks"])
        .output()
        .context("running git")?;
    if !output.status.success() {
        bail!(
            "{} is not a git repository: {}",
            repo.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let hooks = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    let hooks = if hooks.is_absolute() {
        hooks
    } else {
        repo.join(hooks)
    };
    fs::create_dir_all(&hooks).with_context(|| format!("creating {}", hooks.display()))?;
    let hook = hooks.join("pre-commit");
    if hook.exists() && !force {
        bail!(
            "{} already exists; pass --force to replace it",
            hook.display()
        );
    }
    let exe = std::env::current_exe().context("locating the custos binary")?;
    let exe = exe.display().to_string().replace('\'', r"'\''");
    let script = format!(
        "#!/bin/sh\n# Installed by `custos scan install-hook`: refuses commits that add secrets.\n# Skip once with `git commit --no-verify`; silence a line with a `custos:allow` comment.\nif command -v custos >/dev/null 2>&1; then CUSTOS=custos; else CUSTOS='{exe}'; fi\nexec \"$CUSTOS\" scan --staged --no-progress\n"
    );
    fs::write(&hook, script).with_context(|| format!("writing {}", hook.display()))?;
    make_executable(&hook)?;
    eprintln!("custos scan: installed {}", hook.display());
    Ok(ExitCode::SUCCESS)
}

#[cfg(unix)]
fn make_executable(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(0o755))
        .with_context(|| format!("making {} executable", path.display()))
}

#[cfg(not(unix))]
fn make_executable(_path: &Path) -> anyhow::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes_accept_suffixes() {
        assert_eq!(parse_size("100"), Ok(100));
        assert_eq!(parse_size("512K"), Ok(512 * 1024));
        assert_eq!(parse_size("32m"), Ok(32 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("99999999999999G").is_err());
    }
}
