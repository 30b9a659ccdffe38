//! The storage revision a request's writes committed at, so the HTTP layer can answer with it
//! (`X-Vault-Index`) and a client can ask another node to have seen it (read-your-writes).
//!
//! The barrier records every revision it commits into a task-local slot; the server wraps each
//! request in [`track_commits`] and reads the highest one back.
//!
//! A request that asked for an index runs inside [`read_fresh`]: once its node has applied that
//! index, it still reads storage past the read cache and reloads the mirrored tables, because
//! PostgreSQL revisions of concurrent commits on unrelated keys may become visible out of order,
//! so "applied index ≥ N" alone does not prove that commit N's own notification has arrived.

use std::cell::Cell;
use std::future::Future;

use custos_storage::Revision;

tokio::task_local! {
    static COMMITTED: Cell<u64>;
    static FRESH: ();
}

/// Runs `future` with every storage read going past the read cache and every mirrored table
/// reloaded first (read-your-writes).
pub async fn read_fresh<F: Future>(future: F) -> F::Output {
    FRESH.scope((), future).await
}

/// Whether the request running on this task must read fresh (see [`read_fresh`]).
pub(crate) fn reading_fresh() -> bool {
    FRESH.try_with(|()| ()).is_ok()
}

/// Runs `future` and returns its output with the highest revision it committed, if any.
pub async fn track_commits<F: Future>(future: F) -> (F::Output, Option<Revision>) {
    COMMITTED
        .scope(Cell::new(0), async {
            let output = future.await;
            let revision = COMMITTED.with(Cell::get);
            (output, (revision > 0).then_some(Revision(revision)))
        })
        .await
}

/// Notes a committed revision for the request running on this task (outside
/// [`track_commits`], nothing happens).
pub(crate) fn record(revision: Revision) {
    let _ = COMMITTED.try_with(|committed| committed.set(committed.get().max(revision.0)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_highest_committed_revision_is_reported() {
        let ((), revision) = track_commits(async {
            record(Revision(4));
            record(Revision(9));
            record(Revision(7));
        })
        .await;
        assert_eq!(revision, Some(Revision(9)));
        let ((), none) = track_commits(async {}).await;
        assert_eq!(none, None);
        // Outside a tracked request, recording is a no-op.
        record(Revision(1));
    }

    #[tokio::test]
    async fn fresh_reads_are_scoped_to_the_request() {
        assert!(!reading_fresh());
        assert!(read_fresh(async { reading_fresh() }).await);
        assert!(!reading_fresh());
    }
}
