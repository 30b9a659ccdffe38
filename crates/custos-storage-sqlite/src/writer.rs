//! The writer thread and group commit.
//!
//! One thread owns the write connection. It blocks for the first request, drains whatever else
//! is queued (up to `max_batch` commits) and applies the whole group in ONE SQLite transaction,
//! so the group costs one fsync however many clients are in it. Each request:
//! - sees the writes of the requests before it in the group (they run in order on one connection),
//! - gets its own revision (the counter advances once per request that writes),
//! - runs its ops inside a SAVEPOINT, so a request that fails halfway is undone alone.
//!
//! Replies are sent only after the group's COMMIT returned: an `Ok` is durable. If the COMMIT
//! fails, every request of the group gets `Unavailable`, because none of them is known durable.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::thread::JoinHandle;

use custos_storage::{Revision, StorageError, Transaction};
use rusqlite::{Connection, TransactionBehavior};
use tokio::sync::oneshot;

use crate::Counters;
use crate::rows::{self, sqlite_error};

/// A read run on the writer's connection (in-memory databases have no other).
pub(crate) type ReadJob = Box<dyn FnOnce(&Connection) + Send>;

pub(crate) enum Request {
    Commit {
        txn: Transaction,
        reply: oneshot::Sender<Result<Revision, StorageError>>,
    },
    Read(ReadJob),
}

pub(crate) fn writer_gone() -> StorageError {
    StorageError::Unavailable {
        message: "the sqlite writer thread has stopped".into(),
        source: None,
    }
}

/// The handle to the writer thread; dropping it lets the thread finish its queue and close.
pub(crate) struct Writer {
    sender: Option<mpsc::Sender<Request>>,
    thread: Option<JoinHandle<()>>,
}

impl Writer {
    pub(crate) fn spawn(
        connection: Connection,
        max_batch: usize,
        counters: Arc<Counters>,
    ) -> Result<Writer, StorageError> {
        let (sender, receiver) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("custos-sqlite-writer".into())
            .spawn(move || run(connection, &receiver, max_batch.max(1), &counters))
            .map_err(|err| {
                StorageError::unavailable("cannot start the sqlite writer thread", err)
            })?;
        Ok(Writer {
            sender: Some(sender),
            thread: Some(thread),
        })
    }

    pub(crate) fn send(&self, request: Request) -> Result<(), StorageError> {
        self.sender
            .as_ref()
            .ok_or_else(writer_gone)?
            .send(request)
            .map_err(|_| writer_gone())
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Closing the channel ends the thread's loop once the queue is empty; joining makes
        // "dropped" mean "closed", so the file can be reopened or removed right away.
        self.sender.take();
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("the sqlite writer thread panicked");
        }
    }
}

struct PendingCommit {
    txn: Transaction,
    reply: oneshot::Sender<Result<Revision, StorageError>>,
}

fn run(
    mut connection: Connection,
    receiver: &mpsc::Receiver<Request>,
    max_batch: usize,
    counters: &Counters,
) {
    let mut commits = Vec::with_capacity(max_batch);
    let mut reads = Vec::new();
    while let Ok(first) = receiver.recv() {
        let mut next = Some(first);
        while let Some(request) = next.take() {
            match request {
                Request::Commit { txn, reply } => commits.push(PendingCommit { txn, reply }),
                Request::Read(job) => reads.push(job),
            }
            if commits.len() + reads.len() < max_batch {
                next = receiver.try_recv().ok();
            }
        }
        if !commits.is_empty() {
            commit_group(&mut connection, &mut commits, counters);
        }
        // Reads run after the group, so they see it; they wait at most one group.
        for job in reads.drain(..) {
            job(&connection);
        }
    }
    tracing::debug!("sqlite writer thread stopped");
}

fn commit_group(connection: &mut Connection, group: &mut Vec<PendingCommit>, counters: &Counters) {
    let size = group.len();
    match apply_group(connection, group) {
        Ok(results) => {
            counters.transactions.fetch_add(1, Ordering::Relaxed);
            tracing::trace!(requests = size, "sqlite group committed");
            for (pending, result) in group.drain(..).zip(results) {
                match &result {
                    Ok(_) => counters.commits.fetch_add(1, Ordering::Relaxed),
                    Err(StorageError::Conflict) => {
                        counters.conflicts.fetch_add(1, Ordering::Relaxed)
                    }
                    Err(_) => 0,
                };
                // The caller may have stopped waiting; the commit stands either way.
                let _ = pending.reply.send(result);
            }
        }
        Err(err) => {
            tracing::error!(requests = size, error = %err, "sqlite group commit failed");
            for pending in group.drain(..) {
                let _ = pending.reply.send(Err(group_failure(&err)));
            }
        }
    }
}

/// The error each request of a failed group gets: the group's, with the same kind (a corrupt
/// counter stays `Corrupt`), and `Unavailable` for everything else, since nothing committed.
fn group_failure(err: &StorageError) -> StorageError {
    match err {
        StorageError::Corrupt(message) => StorageError::Corrupt(message.clone()),
        other => StorageError::Unavailable {
            message: format!("sqlite group commit failed: {other}"),
            source: None,
        },
    }
}

/// Runs the group in one transaction; the outer error means nothing was committed.
fn apply_group(
    connection: &mut Connection,
    group: &[PendingCommit],
) -> Result<Vec<Result<Revision, StorageError>>, StorageError> {
    let mut txn = connection
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|err| sqlite_error(err, "begin group"))?;
    let first_counter = rows::store_revision(&txn)?;
    let mut counter = first_counter;
    let mut results = Vec::with_capacity(group.len());
    for pending in group {
        let result = apply_one(&mut txn, &pending.txn, &mut counter);
        if let Err(err) = &result
            && !matches!(err, StorageError::Conflict | StorageError::Invalid(_))
            && txn.is_autocommit()
        {
            // SQLite rolled the whole transaction back (I/O error, full disk): the group is lost.
            return Err(StorageError::unavailable(
                "sqlite rolled back the group",
                err.to_string(),
            ));
        }
        results.push(result);
    }
    if counter != first_counter {
        rows::set_store_revision(&txn, counter)?;
    }
    txn.commit()
        .map_err(|err| sqlite_error(err, "commit group"))?;
    Ok(results)
}

fn apply_one(
    txn: &mut rusqlite::Transaction<'_>,
    request: &Transaction,
    counter: &mut u64,
) -> Result<Revision, StorageError> {
    if !rows::conditions_hold(txn, request)? {
        return Err(StorageError::Conflict);
    }
    if request.ops.is_empty() {
        return Ok(Revision(*counter));
    }
    let revision = Revision(
        counter
            .checked_add(1)
            .ok_or_else(|| StorageError::Corrupt("store revision overflows".into()))?,
    );
    // Dropping the savepoint without `commit` rolls this request back alone.
    let savepoint = txn
        .savepoint()
        .map_err(|err| sqlite_error(err, "savepoint"))?;
    rows::apply_ops(&savepoint, request, revision)?;
    savepoint
        .commit()
        .map_err(|err| sqlite_error(err, "release savepoint"))?;
    *counter = revision.0;
    Ok(revision)
}
