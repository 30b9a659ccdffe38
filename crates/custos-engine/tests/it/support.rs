//! The shared harness: an engine over `MemoryStorage` with a `FakeClock`, and share helpers.

use std::sync::Arc;

use custos_engine::logical::Operation;
use custos_engine::{
    Engine, EngineError, FakeClock, InitOutput, InitParams, Request, SealStatus, UnsealInput,
};
use custos_storage::{MemoryStorage, Storage};
use jiff::Timestamp;
use serde_json::{Map, Value};
use zeroize::Zeroizing;

/// When every test's clock starts: 2026-01-01T00:00:00Z.
pub(crate) const START_UNIX: i64 = 1_767_225_600;

pub(crate) struct Harness {
    pub(crate) storage: Arc<MemoryStorage>,
    pub(crate) clock: Arc<FakeClock>,
    pub(crate) engine: Engine,
}

impl Harness {
    pub(crate) fn new() -> Harness {
        let storage = Arc::new(MemoryStorage::new());
        let clock = Arc::new(FakeClock::new(Timestamp::from_second(START_UNIX).unwrap()));
        let engine = Engine::new(storage.clone(), clock.clone());
        Harness {
            storage,
            clock,
            engine,
        }
    }

    /// A harness initialised with one share and unsealed, and its root token.
    pub(crate) async fn unsealed() -> (Harness, String) {
        let harness = Harness::new();
        let token = harness.init_unsealed(1, 1).await.root_token.to_string();
        (harness, token)
    }

    /// A second engine over the same storage and clock, as after a restart (or another node).
    pub(crate) fn another_engine(&self) -> Engine {
        let storage: Arc<dyn Storage> = self.storage.clone();
        Engine::new(storage, self.clock.clone())
    }

    pub(crate) async fn init(&self, shares: u32, threshold: u32) -> InitOutput {
        self.engine.init(params(shares, threshold)).await.unwrap()
    }

    /// Initialises with `shares`/`threshold` and unseals with the first `threshold` shares.
    pub(crate) async fn init_unsealed(&self, shares: u32, threshold: u32) -> InitOutput {
        let output = self.init(shares, threshold).await;
        let status = unseal_all(&self.engine, &output.shares[..threshold as usize]).await;
        assert!(!status.sealed);
        output
    }
}

/// An update request for `path` carrying `data`, made with `token`.
pub(crate) fn put(path: &str, token: &str, data: Value) -> Request {
    Request::new(Operation::Update, path)
        .token(token)
        .data(data)
}

/// A read request for `path`, made with `token`.
pub(crate) fn get(path: &str, token: &str) -> Request {
    Request::new(Operation::Read, path).token(token)
}

/// Reads `path` with `token` and returns the answer's data; anything else panics.
pub(crate) async fn read_data(engine: &Engine, path: &str, token: &str) -> Map<String, Value> {
    engine
        .handle(get(path, token))
        .await
        .unwrap()
        .unwrap()
        .data
        .unwrap()
}

pub(crate) fn params(shares: u32, threshold: u32) -> InitParams {
    InitParams {
        secret_shares: shares,
        secret_threshold: threshold,
        root_token: None,
    }
}

pub(crate) fn key(bytes: &[u8]) -> UnsealInput {
    UnsealInput::Key(Zeroizing::new(bytes.to_vec()))
}

pub(crate) async fn unseal_one(engine: &Engine, share: &[u8]) -> Result<SealStatus, EngineError> {
    engine.unseal(key(share)).await
}

/// Submits every share in order and returns the last status; each submission must succeed.
pub(crate) async fn unseal_all(engine: &Engine, shares: &[Zeroizing<Vec<u8>>]) -> SealStatus {
    let mut last = None;
    for share in shares {
        last = Some(unseal_one(engine, share).await.unwrap());
    }
    last.unwrap()
}

/// The invalid-request message, or a panic naming what came instead.
pub(crate) fn invalid_request(result: Result<InitOutput, EngineError>) -> String {
    match result {
        Err(EngineError::InvalidRequest(message)) => message,
        Err(other) => panic!("expected InvalidRequest, got {other:?}"),
        Ok(output) => panic!("expected InvalidRequest, got {output:?}"),
    }
}

pub(crate) fn invalid_unseal_key(result: Result<SealStatus, EngineError>) -> String {
    match result {
        Err(EngineError::InvalidUnsealKey(message)) => message,
        other => panic!("expected InvalidUnsealKey, got {other:?}"),
    }
}

/// A 33-byte share that is well-formed but belongs to no split: random y bytes and an
/// x-coordinate none of `avoid` uses.
pub(crate) fn foreign_share(avoid: &[&[u8]]) -> Vec<u8> {
    let mut bytes: Vec<u8> = (0..32u8)
        .map(|i| i.wrapping_mul(37).wrapping_add(11))
        .collect();
    let used: Vec<u8> = avoid.iter().map(|share| share[share.len() - 1]).collect();
    let x = (1..=255u8).find(|x| !used.contains(x)).unwrap();
    bytes.push(x);
    bytes
}

/// One audit record, as a test sees it.
#[derive(Clone, Debug)]
pub(crate) struct Recorded {
    pub(crate) path: String,
    pub(crate) caller: String,
    pub(crate) outcome: Option<Result<(), String>>,
    pub(crate) alert: Option<String>,
}

/// An audit sink that keeps every record.
#[derive(Default)]
pub(crate) struct RecordingAudit(pub(crate) std::sync::Mutex<Vec<Recorded>>);

impl RecordingAudit {
    pub(crate) fn records(&self) -> Vec<Recorded> {
        self.0.lock().unwrap().clone()
    }
}

#[async_trait::async_trait]
impl custos_engine::AuditSink for RecordingAudit {
    async fn record(&self, event: &custos_engine::AuditEvent<'_>) -> Result<(), EngineError> {
        self.0.lock().unwrap().push(Recorded {
            path: event.path.to_owned(),
            caller: event.caller.to_owned(),
            outcome: event.outcome.clone(),
            alert: event.alert.clone(),
        });
        Ok(())
    }
}

impl Harness {
    /// A harness whose engine has these limits and records its audit events.
    pub(crate) fn with(limits: custos_engine::Limits) -> (Harness, Arc<RecordingAudit>) {
        let storage = Arc::new(MemoryStorage::new());
        let clock = Arc::new(FakeClock::new(Timestamp::from_second(START_UNIX).unwrap()));
        let audit = Arc::new(RecordingAudit::default());
        let engine = Engine::with_audit(storage.clone(), clock.clone(), limits, audit.clone());
        (
            Harness {
                storage,
                clock,
                engine,
            },
            audit,
        )
    }

    /// Another engine over the same storage and clock with these limits (a restart).
    pub(crate) fn restarted_with(&self, limits: custos_engine::Limits) -> Engine {
        let storage: Arc<dyn Storage> = self.storage.clone();
        Engine::with_limits(storage, self.clock.clone(), limits)
    }
}
