//! Storage throughput and latency benchmark: durable puts, then gets, against one backend.
//!
//! ```text
//! cargo run --release -p custos --example storage_bench -- \
//!     --backend memory|sqlite|postgres [--path FILE] [--url URL] \
//!     --writers N [--readers N] --ops M [--value-size BYTES] [--phase put|get|both]
//! ```
//!
//! Prints one JSON line per phase: backend, op, concurrency, ops, seconds, ops_per_sec, p50_us,
//! p99_us. The put phase writes keys `bench/<i>` (`--ops` of them); the get phase reads random
//! keys among those. Without `--path`, SQLite uses a fresh file in the temp dir and removes it.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use custos_storage::{MemoryStorage, Storage};
use custos_storage_postgres::{PostgresConfig, PostgresStorage};
use custos_storage_sqlite::{SqliteOptions, SqliteStorage};

#[derive(Debug)]
struct Args {
    backend: String,
    path: Option<PathBuf>,
    url: Option<String>,
    writers: usize,
    readers: Option<usize>,
    ops: usize,
    value_size: usize,
    phase: String,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        backend: String::new(),
        path: None,
        url: None,
        writers: 1,
        readers: None,
        ops: 10_000,
        value_size: 256,
        phase: "both".into(),
    };
    let mut raw = std::env::args().skip(1);
    while let Some(flag) = raw.next() {
        let mut value = || raw.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--backend" => args.backend = value()?,
            "--path" => args.path = Some(PathBuf::from(value()?)),
            "--url" => args.url = Some(value()?),
            "--writers" => args.writers = value()?.parse().context("--writers")?,
            "--readers" => args.readers = Some(value()?.parse().context("--readers")?),
            "--ops" => args.ops = value()?.parse().context("--ops")?,
            "--value-size" => args.value_size = value()?.parse().context("--value-size")?,
            "--phase" => args.phase = value()?,
            "--help" | "-h" => {
                println!(
                    "storage_bench --backend memory|sqlite|postgres [--path FILE] [--url URL] \
                     --writers N [--readers N] --ops M [--value-size BYTES] \
                     [--phase put|get|both]"
                );
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?} (try --help)"),
        }
    }
    if args.writers == 0 || args.ops == 0 {
        bail!("--writers and --ops must be at least 1");
    }
    if !matches!(args.phase.as_str(), "put" | "get" | "both") {
        bail!("--phase must be put, get or both");
    }
    Ok(args)
}

/// Removes the benchmark's own SQLite files when it made them.
struct TempFiles(Vec<PathBuf>);

impl Drop for TempFiles {
    fn drop(&mut self) {
        for path in &self.0 {
            let _ = std::fs::remove_file(path);
        }
    }
}

async fn open(args: &Args, concurrency: usize) -> anyhow::Result<(Arc<dyn Storage>, TempFiles)> {
    match args.backend.as_str() {
        "memory" => Ok((Arc::new(MemoryStorage::new()), TempFiles(Vec::new()))),
        "sqlite" => {
            let (path, temp) = match &args.path {
                Some(path) => (path.clone(), Vec::new()),
                None => {
                    let path = std::env::temp_dir()
                        .join(format!("custos-bench-{}.db", std::process::id()));
                    let temp = ["", "-wal", "-shm"]
                        .iter()
                        .map(|suffix| PathBuf::from(format!("{}{suffix}", path.display())))
                        .collect();
                    (path, temp)
                }
            };
            let storage = SqliteStorage::open(&path, SqliteOptions::default())
                .with_context(|| format!("open {}", path.display()))?;
            Ok((Arc::new(storage), TempFiles(temp)))
        }
        "postgres" => {
            let url = args.url.clone().context("--backend postgres needs --url")?;
            let config = PostgresConfig {
                max_connections: concurrency.clamp(1, 64),
                ..PostgresConfig::new(url)
            };
            let storage = PostgresStorage::connect(config)
                .await
                .context("connect to postgres")?;
            Ok((Arc::new(storage), TempFiles(Vec::new())))
        }
        other => bail!("unknown backend {other:?}: use memory, sqlite or postgres"),
    }
}

/// A small deterministic generator: the benchmark needs spread, not secrecy.
fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

struct Report {
    op: &'static str,
    concurrency: usize,
    ops: usize,
    elapsed: Duration,
    latencies_us: Vec<u64>,
}

fn print_report(backend: &str, report: &mut Report) {
    report.latencies_us.sort_unstable();
    let percentile = |p: f64| -> u64 {
        let len = report.latencies_us.len();
        if len == 0 {
            return 0;
        }
        let rank = ((len as f64) * p).ceil() as usize;
        report.latencies_us[rank.clamp(1, len) - 1]
    };
    let seconds = report.elapsed.as_secs_f64();
    // Fields in a fixed order, so the lines read well side by side.
    let line = format!(
        "{{\"backend\":{},\"op\":\"{}\",\"concurrency\":{},\"ops\":{},\"seconds\":{:.3},\
         \"ops_per_sec\":{:.0},\"p50_us\":{},\"p99_us\":{}}}",
        serde_json::Value::from(backend),
        report.op,
        report.concurrency,
        report.ops,
        seconds,
        (report.ops as f64) / seconds,
        percentile(0.50),
        percentile(0.99),
    );
    println!("{line}");
}

/// Runs `ops` operations spread over `concurrency` tasks and measures each one.
async fn run_phase<F, Fut>(
    op: &'static str,
    concurrency: usize,
    ops: usize,
    operation: F,
) -> anyhow::Result<Report>
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let operation = Arc::new(operation);
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(concurrency);
    for task in 0..concurrency {
        let next = Arc::clone(&next);
        let operation = Arc::clone(&operation);
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut seed = 0x9e37_79b9_7f4a_7c15_u64 ^ (task as u64 + 1);
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= ops {
                    return Ok::<_, anyhow::Error>(latencies);
                }
                let random = xorshift(&mut seed);
                let begun = Instant::now();
                operation(index, random).await?;
                latencies.push(u64::try_from(begun.elapsed().as_micros()).unwrap_or(u64::MAX));
            }
        }));
    }
    let mut latencies_us = Vec::with_capacity(ops);
    for task in tasks {
        latencies_us.extend(task.await.context("benchmark task")??);
    }
    Ok(Report {
        op,
        concurrency,
        ops,
        elapsed: started.elapsed(),
        latencies_us,
    })
}

async fn run(args: Args) -> anyhow::Result<()> {
    let readers = args.readers.unwrap_or(args.writers);
    let (storage, _temp) = open(&args, args.writers.max(readers)).await?;
    let backend = storage.backend_name();
    let mut value = vec![0u8; args.value_size];
    let mut seed = 42u64;
    for byte in &mut value {
        *byte = xorshift(&mut seed) as u8;
    }
    let value = Arc::new(value);
    let ops = args.ops;

    if args.phase != "get" {
        let writer = Arc::clone(&storage);
        let shared_value = Arc::clone(&value);
        let mut report = run_phase("put", args.writers, ops, move |index, _| {
            let storage = Arc::clone(&writer);
            let value = Arc::clone(&shared_value);
            async move {
                storage
                    .put(&format!("bench/{index:08}"), value.as_ref().clone())
                    .await?;
                Ok(())
            }
        })
        .await?;
        print_report(backend, &mut report);
    } else {
        // Reads need something to read: fill the keys quickly with many writers.
        let writer = Arc::clone(&storage);
        let shared_value = Arc::clone(&value);
        run_phase("fill", 64, ops, move |index, _| {
            let storage = Arc::clone(&writer);
            let value = Arc::clone(&shared_value);
            async move {
                storage
                    .put(&format!("bench/{index:08}"), value.as_ref().clone())
                    .await?;
                Ok(())
            }
        })
        .await?;
    }

    if args.phase != "put" {
        let reader = Arc::clone(&storage);
        let mut report = run_phase("get", readers, ops, move |_, random| {
            let storage = Arc::clone(&reader);
            let key = format!("bench/{:08}", random % ops as u64);
            async move {
                storage
                    .get(&key)
                    .await?
                    .context("a written key is missing")?;
                Ok(())
            }
        })
        .await?;
        print_report(backend, &mut report);
    }
    Ok(())
}

fn main() -> ExitCode {
    let result = parse_args().and_then(|args| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("start the tokio runtime")?;
        runtime.block_on(run(args))
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("storage_bench: {err:#}");
            ExitCode::FAILURE
        }
    }
}
