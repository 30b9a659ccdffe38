//! The file device. Group commit without a thread hop: the first caller to find no write in
//! progress becomes the leader; it takes every record queued meanwhile, chains them, writes them
//! in one `write_all` and answers their callers, and goes on while records keep arriving. Under
//! load the other callers only queue their record and wait, so one write carries many records
//! and no request waits for a thread to be scheduled. With `fsync = "every_write"` the leader
//! runs on tokio's blocking pool, as it waits for the disk. A small ticker thread does the timed
//! work: the `batched` sync (on a duplicate descriptor, so writers never wait for the disk) and
//! the interval checkpoint.
//!
//! The chain state (last `seq`, hash of the last line) advances only when a write succeeded, so
//! a record that failed is never linked to: the next batch reuses its sequence numbers. A write
//! that failed half-way is cut off again (`set_len`) before anything else is written, and until
//! that succeeds every batch fails, so a torn line never sits inside the chain.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::AuditError;
use crate::chain::{self, Checkpoint, CheckpointReason, Fields, GENESIS_HASH};
use crate::options::{FileOptions, FsyncPolicy, Output};

/// Signs a checkpoint payload, returning `hmac-sha256:<hex>` (the engine derives the key from
/// the device's HMAC key).
pub type Signer = Arc<dyn Fn(&[u8]) -> String + Send + Sync>;

/// The most records one batch takes, so one slow batch cannot grow without bound.
const MAX_BATCH_RECORDS: usize = 16_384;

/// Batches one leader writes before it hands the queue to a task of its own, so a caller never
/// waits for long on other callers' records.
const MAX_LEADER_BATCHES: usize = 64;

/// The longest line the device reads back when it continues a file.
const MAX_TAIL_LINE: u64 = 16 << 20;

/// How often the device checks that its path still names the file it writes (a rotation by an
/// outside tool, a deleted file, a replaced directory).
const IDENTITY_CHECK_INTERVAL: Duration = Duration::from_millis(100);

/// How often the ticker looks for timed work when neither a sync nor a checkpoint is pending.
const IDLE_TICK: Duration = Duration::from_secs(1);

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Records waiting for a leader, and whether one is writing.
#[derive(Default)]
struct Queue {
    records: Vec<Waiting>,
    leading: bool,
}

/// What the callers, the leader and the ticker share.
struct Shared {
    writer: Mutex<Writer>,
    queue: Mutex<Queue>,
    /// `every_write`: the leader waits for the disk, so it runs on the blocking pool.
    blocking: bool,
}

impl Shared {
    /// Writes queued batches until the queue is empty (or the batch budget is spent, when the
    /// rest goes to a task of its own).
    fn lead(self: &Arc<Shared>) {
        for _ in 0..MAX_LEADER_BATCHES {
            let batch = {
                let mut queue = lock(&self.queue);
                if queue.records.is_empty() {
                    queue.leading = false;
                    return;
                }
                let take = queue.records.len().min(MAX_BATCH_RECORDS);
                queue.records.drain(..take).collect::<Vec<_>>()
            };
            lock(&self.writer).write_batch(batch);
        }
        let shared = Arc::clone(self);
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn_blocking(move || shared.lead());
            }
            Err(_) => shared.lead(),
        }
    }
}

/// The duty to write the queue, held by the caller that found no write in progress. If its
/// future is dropped before it wrote (a request cancelled while yielding), `Drop` writes the
/// queue instead, so records never wait for a leader that is gone.
struct Leadership(Option<Arc<Shared>>);

impl Leadership {
    fn take(mut self) -> Option<Arc<Shared>> {
        self.0.take()
    }
}

impl Drop for Leadership {
    fn drop(&mut self) {
        let Some(shared) = self.0.take() else {
            return;
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) if shared.blocking => {
                runtime.spawn_blocking(move || shared.lead());
            }
            _ => shared.lead(),
        }
    }
}

/// An audit device writing a hash-chained JSON-lines file (or standard output).
pub struct FileDevice {
    device: String,
    shared: Arc<Shared>,
    /// Stops the ticker thread (dropping it does too).
    stop: Mutex<Option<mpsc::Sender<()>>>,
    ticker: Option<JoinHandle<()>>,
    head: Arc<Mutex<Option<(u64, String)>>>,
}

impl std::fmt::Debug for FileDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileDevice")
            .field("device", &self.device)
            .finish_non_exhaustive()
    }
}

impl FileDevice {
    /// Opens the device's output: creates the file with `options.mode` if it is missing (never
    /// its directory) and continues the chain of its last line, or of the newest rotated file
    /// beside it when it is empty. A torn last line (no newline) is closed with a newline and left
    /// for `verify` to report; it is never linked to.
    pub fn open(
        device: &str,
        options: FileOptions,
        signer: Option<Signer>,
    ) -> Result<FileDevice, AuditError> {
        let (sink, seq, last_hash) = match &options.output {
            Output::Stdout => (Sink::Stdout, 0, GENESIS_HASH.to_owned()),
            Output::File(path) => {
                let mut open = open_file(device, path, options.mode)?;
                let (seq, last_hash) = continue_chain(device, path, &mut open)?;
                (Sink::File(open), seq, last_hash)
            }
        };
        let blocking = options.fsync == FsyncPolicy::EveryWrite;
        let writer = Writer::new(device, options, signer, sink, seq, last_hash);
        let head = Arc::clone(&writer.head);
        let shared = Arc::new(Shared {
            writer: Mutex::new(writer),
            queue: Mutex::new(Queue::default()),
            blocking,
        });
        let (stop, stopped) = mpsc::channel();
        let ticking = Arc::clone(&shared);
        let ticker = std::thread::Builder::new()
            .name(format!("audit {device}"))
            .spawn(move || tick_until_stopped(&ticking, &stopped))
            .map_err(|source| AuditError::Io {
                device: device.to_owned(),
                action: "start the timer thread for",
                path: String::new(),
                source,
            })?;
        Ok(FileDevice {
            device: device.to_owned(),
            shared,
            stop: Mutex::new(Some(stop)),
            ticker: Some(ticker),
            head,
        })
    }

    /// Appends one record (a one-line JSON object); resolves once it is written as the fsync
    /// policy requires. An error means the record is not part of the chain.
    pub async fn append(&self, record: Vec<u8>) -> Result<(), AuditError> {
        let (reply, answer) = oneshot::channel();
        let lead = {
            let mut queue = lock(&self.shared.queue);
            queue.records.push((record, reply));
            !std::mem::replace(&mut queue.leading, true)
        };
        if lead {
            let leadership = Leadership(Some(Arc::clone(&self.shared)));
            // Let the other requests ready on this worker run up to their own record first,
            // so one write carries them all (group commit); it costs one turn of the scheduler.
            // Dropped meanwhile (the client went away), the leadership hands the queue on.
            tokio::task::yield_now().await;
            if let Some(shared) = leadership.take() {
                if shared.blocking {
                    tokio::task::spawn_blocking(move || shared.lead())
                        .await
                        .map_err(|_| self.closed())?;
                } else {
                    shared.lead();
                }
            }
        }
        answer.await.map_err(|_| self.closed())?
    }

    /// Closes the current file with a `reopen` checkpoint and opens the path again (SIGHUP,
    /// after an outside rotation). Blocks while a batch is being written.
    pub fn reopen(&self) -> Result<(), AuditError> {
        lock(&self.shared.writer).reopen(CheckpointReason::Reopen)
    }

    /// Writes a `close` checkpoint, syncs and stops the timer thread; later appends fail.
    /// Closing twice does nothing.
    pub async fn close(&self) {
        let shared = Arc::clone(&self.shared);
        // The closing sync waits for the disk.
        let closed = tokio::task::spawn_blocking(move || lock(&shared.writer).close()).await;
        if closed.is_err() {
            lock(&self.shared.writer).close();
        }
        lock(&self.stop).take();
    }

    /// The chain head: the last line's `seq` and `sha256:<hex>` hash, once a line exists.
    pub fn head(&self) -> Option<(u64, String)> {
        lock(&self.head).clone()
    }

    fn closed(&self) -> AuditError {
        AuditError::Closed {
            device: self.device.clone(),
        }
    }
}

impl Drop for FileDevice {
    fn drop(&mut self) {
        // Best effort: a device dropped without `close` still ends its file with a checkpoint.
        lock(&self.shared.writer).close();
        lock(&self.stop).take();
        if let Some(ticker) = self.ticker.take()
            && ticker.join().is_err()
        {
            tracing::error!(device = %self.device, "the audit timer thread panicked");
        }
    }
}

/// The timer thread: the `batched` sync and the interval checkpoint, until the device stops.
fn tick_until_stopped(shared: &Shared, stopped: &mpsc::Receiver<()>) {
    loop {
        let wait = lock(&shared.writer)
            .deadline()
            .map_or(IDLE_TICK, |deadline| {
                deadline.saturating_duration_since(Instant::now())
            });
        match stopped.recv_timeout(wait) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
        let due_sync = lock(&shared.writer).tick();
        if let Some((device, file)) = due_sync
            && let Err(error) = file.sync_data()
        {
            tracing::error!(device = %device, error = %error, "audit file sync failed");
            lock(&shared.writer).dirty = true;
        }
    }
}

/// An open output file and its identity, to notice when the path names another file.
struct OpenFile {
    file: File,
    path: PathBuf,
    dev: u64,
    ino: u64,
    len: u64,
}

enum Sink {
    File(OpenFile),
    Stdout,
    /// The file was closed and opening the path again failed; the next batch tries again.
    Detached(PathBuf),
    /// Closed for good.
    Closed,
}

/// The output and the chain state, behind the device's writer lock.
struct Writer {
    device: String,
    options: FileOptions,
    signer: Option<Signer>,
    sink: Sink,
    /// The `seq` of the last line written (0: none yet).
    seq: u64,
    /// `sha256:<hex>` of the last line written.
    last_hash: String,
    records_since_checkpoint: u64,
    last_checkpoint: Instant,
    /// Written but not yet synced (batched policy).
    dirty: bool,
    last_sync: Instant,
    /// The length a half-written file must be cut back to before the next write.
    repair: Option<u64>,
    /// When `ready` last compared the path with the open file.
    last_identity_check: Instant,
    head: Arc<Mutex<Option<(u64, String)>>>,
    buffer: Vec<u8>,
}

/// A record waiting for its batch.
type Waiting = (Vec<u8>, oneshot::Sender<Result<(), AuditError>>);

impl Writer {
    fn new(
        device: &str,
        options: FileOptions,
        signer: Option<Signer>,
        sink: Sink,
        seq: u64,
        last_hash: String,
    ) -> Writer {
        let now = Instant::now();
        Writer {
            device: device.to_owned(),
            options,
            signer,
            sink,
            seq,
            head: Arc::new(Mutex::new((seq > 0).then(|| (seq, last_hash.clone())))),
            last_hash,
            records_since_checkpoint: 0,
            last_checkpoint: now,
            dirty: false,
            last_sync: now,
            repair: None,
            // Checked at the first batch.
            last_identity_check: now.checked_sub(IDENTITY_CHECK_INTERVAL).unwrap_or(now),
            buffer: Vec::new(),
        }
    }

    /// When the timer must wake up: a pending sync or an interval checkpoint.
    fn deadline(&self) -> Option<Instant> {
        let sync = (self.dirty && self.options.fsync == FsyncPolicy::Batched)
            .then(|| self.last_sync + self.options.fsync_interval);
        let checkpoint = (self.records_since_checkpoint > 0
            && !self.options.checkpoint_interval.is_zero())
        .then(|| self.last_checkpoint + self.options.checkpoint_interval);
        match (sync, checkpoint) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Timed work: the interval checkpoint, when due; and, when the batched sync is due, a
    /// duplicate of the file's descriptor for the timer to sync without holding the writer.
    fn tick(&mut self) -> Option<(String, File)> {
        if self.records_since_checkpoint > 0
            && !self.options.checkpoint_interval.is_zero()
            && self.last_checkpoint.elapsed() >= self.options.checkpoint_interval
            && let Err(error) = self.checkpoint(CheckpointReason::Interval)
        {
            tracing::warn!(device = %self.device, error = %error, "audit checkpoint failed");
        }
        if !(self.dirty
            && self.options.fsync == FsyncPolicy::Batched
            && self.last_sync.elapsed() >= self.options.fsync_interval)
        {
            return None;
        }
        self.dirty = false;
        self.last_sync = Instant::now();
        match &self.sink {
            Sink::File(open) => match open.file.try_clone() {
                Ok(file) => Some((self.device.clone(), file)),
                Err(error) => {
                    tracing::error!(device = %self.device, error = %error, "audit file sync failed");
                    self.dirty = true;
                    None
                }
            },
            _ => None,
        }
    }

    fn io_error(&self, action: &'static str, error: &io::Error) -> AuditError {
        let path = match &self.sink {
            Sink::File(open) => open.path.display().to_string(),
            Sink::Detached(path) => path.display().to_string(),
            Sink::Stdout => "stdout".to_owned(),
            Sink::Closed => String::new(),
        };
        AuditError::Io {
            device: self.device.clone(),
            action,
            path,
            source: io::Error::new(error.kind(), error.to_string()),
        }
    }

    fn write_batch(&mut self, batch: Vec<Waiting>) {
        if let Err(error) = self.ready() {
            for (_, reply) in batch {
                let _ = reply.send(Err(self.io_error("open", &error)));
            }
            return;
        }
        let mut buffer = std::mem::take(&mut self.buffer);
        buffer.clear();
        let mut seq = self.seq;
        // The state advances only once the batch is written; until then it stays as it was.
        let mut last_hash = self.last_hash.clone();
        let mut since_checkpoint = self.records_since_checkpoint;
        let mut checkpointed = false;
        let mut accepted = Vec::with_capacity(batch.len());
        for (record, reply) in batch {
            let start = buffer.len();
            if let Err(error) = chain::push_record(&mut buffer, seq + 1, &last_hash, &record) {
                let _ = reply.send(Err(error));
                continue;
            }
            seq += 1;
            last_hash = chain::line_hash(&buffer[start..buffer.len() - 1]);
            accepted.push(reply);
            since_checkpoint += 1;
            if self.options.checkpoint_records > 0
                && !self.options.checkpoint_interval.is_zero()
                && since_checkpoint >= self.options.checkpoint_records
            {
                let start = buffer.len();
                self.push_checkpoint(&mut buffer, seq + 1, &last_hash, CheckpointReason::Count);
                seq += 1;
                last_hash = chain::line_hash(&buffer[start..buffer.len() - 1]);
                since_checkpoint = 0;
                checkpointed = true;
            }
        }
        let outcome = if buffer.is_empty() {
            Ok(())
        } else {
            self.write(&buffer)
        };
        match outcome {
            Ok(()) => {
                self.last_hash = last_hash;
                self.commit(seq, checkpointed, since_checkpoint);
                let synced = if self.options.fsync == FsyncPolicy::EveryWrite {
                    self.sync_now()
                } else {
                    Ok(())
                };
                for reply in accepted {
                    let _ = reply.send(match &synced {
                        Ok(()) => Ok(()),
                        Err(error) => Err(self.io_error("sync", error)),
                    });
                }
                if let (Some(limit), Sink::File(open)) = (self.options.max_file_size, &self.sink)
                    && open.len >= limit
                {
                    self.rotate();
                }
            }
            Err(error) => {
                for reply in accepted {
                    let _ = reply.send(Err(self.io_error("write", &error)));
                }
            }
        }
        self.buffer = buffer;
    }

    /// Records that lines up to `seq` are written (`self.last_hash` already holds its hash).
    fn commit(&mut self, seq: u64, checkpointed: bool, since_checkpoint: u64) {
        self.seq = seq;
        self.records_since_checkpoint = since_checkpoint;
        if checkpointed {
            self.last_checkpoint = Instant::now();
        }
        self.dirty = true;
        *self.head.lock().unwrap_or_else(PoisonError::into_inner) =
            Some((seq, self.last_hash.clone()));
    }

    fn sync_now(&mut self) -> io::Result<()> {
        if let Sink::File(open) = &self.sink {
            open.file.sync_data()?;
        }
        self.dirty = false;
        self.last_sync = Instant::now();
        Ok(())
    }

    fn push_checkpoint(
        &self,
        buffer: &mut Vec<u8>,
        seq: u64,
        prev_hash: &str,
        reason: CheckpointReason,
    ) {
        let time = chain::now_rfc3339();
        let mut checkpoint = Checkpoint {
            device: &self.device,
            seq,
            prev_hash,
            time: &time,
            reason,
            signature: None,
        };
        let signature = self.signer.as_ref().map(|signer| {
            signer(&chain::checkpoint_payload(
                &self.device,
                seq,
                prev_hash,
                &time,
                checkpoint.records(),
                reason,
            ))
        });
        checkpoint.signature = signature.as_deref();
        checkpoint.push(buffer);
    }

    /// Writes one checkpoint line on its own, once the sink is ready.
    fn checkpoint(&mut self, reason: CheckpointReason) -> Result<(), AuditError> {
        self.ready()
            .map_err(|error| self.io_error("open", &error))?;
        self.write_checkpoint(reason)
    }

    /// Writes one checkpoint line to the sink as it is.
    fn write_checkpoint(&mut self, reason: CheckpointReason) -> Result<(), AuditError> {
        let mut buffer = Vec::new();
        let seq = self.seq + 1;
        self.push_checkpoint(&mut buffer, seq, &self.last_hash.clone(), reason);
        let hash = chain::line_hash(&buffer[..buffer.len() - 1]);
        self.write(&buffer)
            .map_err(|error| self.io_error("write", &error))?;
        self.last_hash = hash;
        self.commit(seq, true, 0);
        Ok(())
    }

    /// Makes sure the sink can take a write: cuts off a half-written batch, notices that the
    /// path names another file (moved, deleted, its directory replaced) and opens the path again.
    fn ready(&mut self) -> io::Result<()> {
        if let (Some(length), Sink::File(open)) = (self.repair, &self.sink) {
            open.file.set_len(length)?;
            open.file.sync_data()?;
            self.repair = None;
        }
        // A `stat` per batch would cost as much as the write; the path is looked at a few times
        // a second, and records written meanwhile go to the file still open (not lost).
        let look = self.last_identity_check.elapsed() >= IDENTITY_CHECK_INTERVAL;
        let moved = match &self.sink {
            Sink::File(open) if look => {
                self.last_identity_check = Instant::now();
                match std::fs::metadata(&open.path) {
                    Ok(metadata) => metadata.dev() != open.dev || metadata.ino() != open.ino,
                    Err(_) => true,
                }
            }
            _ => false,
        };
        if moved {
            // The old file still takes a closing checkpoint through its descriptor, so it ends
            // as a rotated file does and the chain goes on in the new one.
            if let Err(error) = self.write_checkpoint(CheckpointReason::Reopen) {
                tracing::warn!(device = %self.device, error = %error, "cannot close the moved audit file");
            }
            if let Sink::File(open) = std::mem::replace(&mut self.sink, Sink::Closed) {
                let _ = open.file.sync_data();
                self.sink = Sink::Detached(open.path);
            }
        }
        if let Sink::Detached(path) = &self.sink {
            let path = path.clone();
            let mut open = open_file(&self.device, &path, self.options.mode).map_err(to_io)?;
            close_torn_line(&mut open).map_err(to_io)?;
            self.sink = Sink::File(open);
        }
        match self.sink {
            Sink::Closed => Err(io::Error::other("the device is closed")),
            _ => Ok(()),
        }
    }

    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        match &mut self.sink {
            Sink::File(open) => {
                let before = open.len;
                match open.file.write_all(bytes) {
                    Ok(()) => {
                        open.len += bytes.len() as u64;
                        Ok(())
                    }
                    Err(error) => {
                        // Cut a partial write off now, or before the next one.
                        if open.file.set_len(before).is_err() {
                            self.repair = Some(before);
                        }
                        Err(error)
                    }
                }
            }
            Sink::Stdout => {
                let mut stdout = io::stdout().lock();
                stdout.write_all(bytes)?;
                stdout.flush()
            }
            Sink::Detached(_) | Sink::Closed => Err(io::Error::other("no open audit file")),
        }
    }

    /// Closes the current file with a checkpoint of `reason` and opens the path again.
    fn reopen(&mut self, reason: CheckpointReason) -> Result<(), AuditError> {
        if !matches!(self.sink, Sink::File(_)) {
            return self.ready().map_err(|error| self.io_error("open", &error));
        }
        self.checkpoint(reason)?;
        self.sync_now()
            .map_err(|error| self.io_error("sync", &error))?;
        if let Sink::File(open) = std::mem::replace(&mut self.sink, Sink::Closed) {
            self.sink = Sink::Detached(open.path);
        }
        self.ready().map_err(|error| self.io_error("open", &error))
    }

    /// Size rotation: a `rotate` checkpoint, the file renamed beside itself, a fresh file.
    fn rotate(&mut self) {
        if let Err(error) = self.checkpoint(CheckpointReason::Rotate).and_then(|()| {
            self.sync_now()
                .map_err(|error| self.io_error("sync", &error))
        }) {
            tracing::error!(device = %self.device, error = %error, "audit rotation failed");
            return;
        }
        let Sink::File(open) = std::mem::replace(&mut self.sink, Sink::Closed) else {
            return;
        };
        let path = open.path.clone();
        match rotated_name(&path) {
            Some(target) => {
                if let Err(error) = std::fs::rename(&path, &target) {
                    tracing::error!(device = %self.device, error = %error, "cannot rename the audit file");
                }
            }
            None => {
                tracing::error!(device = %self.device, "no free name to rotate the audit file to")
            }
        }
        drop(open);
        self.sink = Sink::Detached(path);
        if let Err(error) = self.ready() {
            // The next batch tries again, and fails while it cannot.
            tracing::error!(device = %self.device, error = %error, "cannot open a new audit file");
        }
    }

    fn close(&mut self) {
        if matches!(self.sink, Sink::Closed) {
            return;
        }
        if matches!(self.sink, Sink::File(_) | Sink::Stdout)
            && let Err(error) = self.checkpoint(CheckpointReason::Close)
        {
            tracing::error!(device = %self.device, error = %error, "cannot write the closing audit checkpoint");
        }
        if let Err(error) = self.sync_now() {
            tracing::error!(device = %self.device, error = %error, "audit file sync failed");
        }
        self.sink = Sink::Closed;
    }
}

fn to_io(error: AuditError) -> io::Error {
    match error {
        AuditError::Io { source, .. } => source,
        other => io::Error::other(other.to_string()),
    }
}

/// Opens (creating with `mode`) `path` for appending.
fn open_file(device: &str, path: &Path, mode: Option<u32>) -> Result<OpenFile, AuditError> {
    let io_error = |action: &'static str, source: io::Error| AuditError::Io {
        device: device.to_owned(),
        action,
        path: path.display().to_string(),
        source,
    };
    let mut options = OpenOptions::new();
    options.read(true).append(true).create(true);
    if let Some(mode) = mode {
        options.mode(mode);
    }
    let file = options
        .open(path)
        .map_err(|error| io_error("open", error))?;
    let metadata = file.metadata().map_err(|error| io_error("stat", error))?;
    if !metadata.is_file() {
        return Err(io_error("open", io::Error::other("not a regular file")));
    }
    Ok(OpenFile {
        file,
        path: path.to_owned(),
        dev: metadata.dev(),
        ino: metadata.ino(),
        len: metadata.len(),
    })
}

/// Ends a torn last line (no newline) with a newline, so the next record starts a line of its
/// own; the torn bytes stay for `verify` to report.
fn close_torn_line(open: &mut OpenFile) -> Result<(), AuditError> {
    if open.len == 0 {
        return Ok(());
    }
    let mut last = [0u8; 1];
    let result = open
        .file
        .read_exact_at(&mut last, open.len - 1)
        .and_then(|()| {
            if last[0] == b'\n' {
                Ok(())
            } else {
                open.file.write_all(b"\n").map(|()| open.len += 1)
            }
        });
    result.map_err(|source| AuditError::Io {
        device: String::new(),
        action: "repair",
        path: open.path.display().to_string(),
        source,
    })
}

/// The chain state to continue: from the file's last complete line, else from the newest
/// rotated file beside it, else a new chain.
fn continue_chain(
    device: &str,
    path: &Path,
    open: &mut OpenFile,
) -> Result<(u64, String), AuditError> {
    close_torn_line(open).map_err(|error| match error {
        AuditError::Io {
            action,
            path,
            source,
            ..
        } => AuditError::Io {
            device: device.to_owned(),
            action,
            path,
            source,
        },
        other => other,
    })?;
    if let Some(state) = last_line_state(device, path, &open.file, open.len)? {
        return Ok(state);
    }
    if let Some(rotated) = newest_rotated(path)
        && let Ok(file) = File::open(&rotated)
        && let Ok(metadata) = file.metadata()
        && let Some(state) = last_line_state(device, &rotated, &file, metadata.len())?
    {
        return Ok(state);
    }
    Ok((0, GENESIS_HASH.to_owned()))
}

/// The `seq` and hash of the last well-formed line of a file, if it has one. A line torn
/// earlier (closed by a newline since) is skipped: it is not part of the chain.
fn last_line_state(
    device: &str,
    path: &Path,
    file: &File,
    len: u64,
) -> Result<Option<(u64, String)>, AuditError> {
    let io_error = |source: io::Error| AuditError::Io {
        device: device.to_owned(),
        action: "read",
        path: path.display().to_string(),
        source,
    };
    let mut end = len;
    // Lines from the end: the newest complete line that parses gives the state, but only
    // lines that are visibly torn leftovers (not JSON at all) may be skipped over.
    while end > 0 {
        let Some(line) = line_before(file, end).map_err(io_error)? else {
            return Ok(None);
        };
        let (start, bytes) = line;
        if !bytes.is_empty() {
            match serde_json::from_slice::<Fields<'_>>(&bytes) {
                Ok(fields) if fields.seq < u64::MAX / 2 => {
                    return Ok(Some((fields.seq, chain::line_hash(&bytes))));
                }
                Ok(fields) => {
                    return Err(AuditError::NotAChain {
                        device: device.to_owned(),
                        path: path.display().to_string(),
                        message: format!("seq {} is out of range", fields.seq),
                    });
                }
                Err(error) => {
                    if serde_json::from_slice::<serde::de::IgnoredAny>(&bytes).is_ok() {
                        return Err(AuditError::NotAChain {
                            device: device.to_owned(),
                            path: path.display().to_string(),
                            message: error.to_string(),
                        });
                    }
                }
            }
        }
        end = start;
    }
    Ok(None)
}

/// The line that ends at byte `end` (which is just past its newline, or the file's end):
/// its start offset and its bytes without the newline.
fn line_before(file: &File, end: u64) -> io::Result<Option<(u64, Vec<u8>)>> {
    let content_end = end - 1; // the newline ending the line
    let mut start = content_end;
    let mut chunk = vec![0u8; 64 * 1024];
    while start > 0 {
        let read_from = start.saturating_sub(chunk.len() as u64);
        let size = usize::try_from(start - read_from).map_err(io::Error::other)?;
        file.read_exact_at(&mut chunk[..size], read_from)?;
        if let Some(position) = chunk[..size].iter().rposition(|byte| *byte == b'\n') {
            start = read_from + position as u64 + 1;
            break;
        }
        start = read_from;
        if content_end - start > MAX_TAIL_LINE {
            return Ok(None);
        }
    }
    let length = usize::try_from(content_end - start).map_err(io::Error::other)?;
    let mut bytes = vec![0u8; length];
    file.read_exact_at(&mut bytes, start)?;
    Ok(Some((start, bytes)))
}

/// `audit.log` → `audit-20261128T101500.123Z.log` beside it (a counter is added if taken).
fn rotated_name(path: &Path) -> Option<PathBuf> {
    let stem = path.file_stem()?.to_string_lossy().into_owned();
    let extension = path
        .extension()
        .map(|ext| ext.to_string_lossy().into_owned());
    let stamp = jiff::Timestamp::now()
        .strftime("%Y%m%dT%H%M%S%.3fZ")
        .to_string();
    (0..1000).find_map(|counter| {
        let suffix = if counter == 0 {
            String::new()
        } else {
            format!("-{counter}")
        };
        let name = match &extension {
            Some(extension) => format!("{stem}-{stamp}{suffix}.{extension}"),
            None => format!("{stem}-{stamp}{suffix}"),
        };
        let candidate = path.with_file_name(name);
        (!candidate.exists()).then_some(candidate)
    })
}

/// The newest file [`rotated_name`] made for `path`: the latest time stamp, then the highest
/// counter.
fn newest_rotated(path: &Path) -> Option<PathBuf> {
    let stem = path.file_stem()?.to_string_lossy().into_owned();
    let extension = path
        .extension()
        .map(|ext| format!(".{}", ext.to_string_lossy()))
        .unwrap_or_default();
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
        _ => PathBuf::from("."),
    };
    let prefix = format!("{stem}-");
    std::fs::read_dir(directory)
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            let stamp = name.strip_prefix(&prefix)?.strip_suffix(&extension)?;
            let (stamp, counter) = match stamp.split_once('-') {
                Some((stamp, counter)) => (stamp, counter.parse::<u32>().ok()?),
                None => (stamp, 0),
            };
            let well_formed = stamp.len() == "20261128T101500.123Z".len()
                && stamp.starts_with(|c: char| c.is_ascii_digit())
                && stamp.ends_with('Z');
            well_formed.then(|| ((stamp.to_owned(), counter), entry.path()))
        })
        .max()
        .map(|(_, path)| path)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::verify::{VerifyOptions, verify_files};

    fn send(writer: &mut Writer, record: &str) -> Result<(), AuditError> {
        let (reply, mut answer) = oneshot::channel();
        writer.write_batch(vec![(record.as_bytes().to_vec(), reply)]);
        answer.try_recv().unwrap()
    }

    /// Verifies `path` as a closed file, which must be intact.
    fn closed_and_intact(path: &Path) -> crate::verify::Report {
        let report = verify_files(
            std::slice::from_ref(&path.to_path_buf()),
            VerifyOptions {
                closed: true,
                ..VerifyOptions::default()
            },
        )
        .unwrap();
        assert_eq!(report.problem, None, "{report:?}");
        report
    }

    /// A writer on a new file at `path`, with the default options and no signer.
    fn new_writer(path: &Path) -> Writer {
        let options = FileOptions::from_options(
            "file/",
            &BTreeMap::from([("file_path".to_owned(), path.display().to_string())]),
        )
        .unwrap();
        let open = open_file("file/", path, options.mode).unwrap();
        Writer::new(
            "file/",
            options,
            None,
            Sink::File(open),
            0,
            GENESIS_HASH.to_owned(),
        )
    }

    fn file_mut(writer: &mut Writer) -> &mut File {
        match &mut writer.sink {
            Sink::File(open) => &mut open.file,
            _ => panic!("no open file"),
        }
    }

    #[test]
    fn a_failed_write_is_never_linked_to() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("audit.log");
        let mut writer = new_writer(&path);
        send(&mut writer, r#"{"n":1}"#).unwrap();

        // The same file through a read-only descriptor: every write fails.
        *file_mut(&mut writer) = File::open(&path).unwrap();
        assert!(send(&mut writer, r#"{"n":2}"#).is_err());
        assert!(send(&mut writer, r#"{"n":3}"#).is_err());
        assert_eq!(writer.seq, 1);
        assert_eq!(
            writer.head.lock().unwrap().as_ref().map(|head| head.0),
            Some(1)
        );

        *file_mut(&mut writer) = OpenOptions::new().append(true).open(&path).unwrap();
        send(&mut writer, r#"{"n":4}"#).unwrap();
        writer.close();
        let report = closed_and_intact(&path);
        let text = std::fs::read_to_string(&path).unwrap();
        let numbers: Vec<&str> = text
            .lines()
            .filter_map(|line| line.split(r#""n":"#).nth(1))
            .collect();
        assert_eq!(numbers, ["1}", "4}"]);
        assert_eq!(report.last_seq, Some(3));
    }

    #[test]
    fn a_half_written_batch_is_cut_off_before_the_next() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("audit.log");
        let mut writer = new_writer(&path);
        send(&mut writer, r#"{"n":1}"#).unwrap();
        // What a write that failed half-way leaves, when cutting it off failed too.
        let before = std::fs::metadata(&path).unwrap().len();
        file_mut(&mut writer)
            .write_all(br#"{"seq":2,"prev_ha"#)
            .unwrap();
        writer.repair = Some(before);
        send(&mut writer, r#"{"n":2}"#).unwrap();
        writer.close();
        let report = closed_and_intact(&path);
        assert_eq!(report.last_seq, Some(3));
    }
}
