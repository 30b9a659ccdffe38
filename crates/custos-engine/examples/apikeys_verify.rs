//! In-process benchmark of API-key verification: the engine call a request makes (token check,
//! policy, the `apikeys` backend), without HTTP. Also measures the index at scale: memory per
//! stored key and the time to build the index at unseal.
//!
//! ```text
//! cargo run --release -p custos-engine --example apikeys_verify -- [KEYS] [VERIFICATIONS]
//! ```
//!
//! Prints the latency percentiles of verifying random stored keys one after another, and with
//! `KEYS` stored keys the resident memory they added and how long the index took to build.

use std::sync::Arc;
use std::time::{Duration, Instant};

use custos_engine::logical::Operation;
use custos_engine::{Engine, Request, SystemClock, UnsealInput};
use custos_storage::MemoryStorage;
use serde_json::{Value, json};
use zeroize::Zeroizing;

const ROOT: &str = "bench-root-token";

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map_or(0, |kb| kb * 1024)
}

async fn call(engine: &Engine, operation: Operation, path: &str, data: Value) -> Value {
    let answer = engine
        .handle(Request::new(operation, path).token(ROOT).data(data))
        .await
        .unwrap_or_else(|error| panic!("{path}: {error}"));
    answer
        .and_then(|answer| answer.data)
        .map(Value::Object)
        .unwrap_or(Value::Null)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let keys: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(1000);
    let verifications: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(200_000);

    let storage = Arc::new(MemoryStorage::new());
    let engine = Engine::new(storage.clone(), Arc::new(SystemClock));
    let init = engine
        .dev_init(Some(Zeroizing::new(ROOT.to_owned())))
        .await
        .expect("init");
    call(
        &engine,
        Operation::Update,
        "sys/mounts/apikeys",
        json!({"type": "apikeys"}),
    )
    .await;
    call(
        &engine,
        Operation::Update,
        "apikeys/keyrings/bench",
        json!({"prefix": "bench_live"}),
    )
    .await;

    let before = rss_bytes();
    let started = Instant::now();
    let mut sample = Vec::new();
    for n in 0..keys {
        let answer = call(
            &engine,
            Operation::Update,
            "apikeys/keyrings/bench/keys",
            json!({"name": format!("key {n}"), "owner_id": format!("owner_{}", n % 1000), "permissions": ["docs.read"]}),
        )
        .await;
        if n % (keys / 1000).max(1) == 0 {
            sample.push(answer["key"].as_str().expect("key").to_owned());
        }
    }
    let created = started.elapsed();
    let after = rss_bytes();
    println!(
        "stored {keys} keys in {:.1} s ({:.0} keys/s); resident memory +{:.1} MiB (storage and index together: {:.0} bytes per key)",
        created.as_secs_f64(),
        keys as f64 / created.as_secs_f64(),
        (after.saturating_sub(before)) as f64 / (1 << 20) as f64,
        after.saturating_sub(before) as f64 / keys as f64,
    );

    // The index alone: a second node on the same storage builds its own while the first keeps
    // everything it holds, so the memory it adds is the index (freed memory would be reused).
    let node = Engine::new(storage.clone(), Arc::new(SystemClock));
    let before_unseal = rss_bytes();
    let started = Instant::now();
    node.unseal(UnsealInput::Key(init.shares[0].clone()))
        .await
        .expect("unseal");
    let first = call(
        &node,
        Operation::Update,
        "apikeys/verify",
        json!({"key": sample[0]}),
    )
    .await;
    assert_eq!(first["code"], "VALID");
    let build = started.elapsed();
    let indexed = rss_bytes();
    println!(
        "index built at unseal in {:.3} s for {keys} keys; index memory {:.0} bytes per key",
        build.as_secs_f64(),
        indexed.saturating_sub(before_unseal) as f64 / keys as f64,
    );
    drop(node);

    let mut latencies = Vec::with_capacity(verifications);
    let bodies: Vec<Value> = sample
        .iter()
        .map(|key| json!({"key": key, "permissions": "docs.read"}))
        .collect();
    let started = Instant::now();
    for n in 0..verifications {
        let body = bodies[n % bodies.len()].clone();
        let t0 = Instant::now();
        let answer = engine
            .handle(
                Request::new(Operation::Update, "apikeys/verify")
                    .token(ROOT)
                    .data(body),
            )
            .await
            .expect("verify")
            .expect("answer");
        latencies.push(t0.elapsed());
        debug_assert_eq!(answer.data.as_ref().expect("data")["code"], "VALID");
    }
    let total = started.elapsed();
    latencies.sort();
    println!(
        "{verifications} verifications over {} keys: {:.0}/s on one thread; p50 {:.1} µs, p99 {:.1} µs, p99.9 {:.1} µs, max {:.1} µs",
        keys,
        verifications as f64 / total.as_secs_f64(),
        percentile(&latencies, 0.50).as_secs_f64() * 1e6,
        percentile(&latencies, 0.99).as_secs_f64() * 1e6,
        percentile(&latencies, 0.999).as_secs_f64() * 1e6,
        latencies.last().expect("latencies").as_secs_f64() * 1e6,
    );
}
