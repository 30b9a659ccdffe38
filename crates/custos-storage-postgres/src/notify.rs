//! Cross-node cache invalidation over PostgreSQL's LISTEN/NOTIFY.
//!
//! Every committed write sends `NOTIFY custos_invalidate` with the keys it wrote, inside its own
//! transaction, so the notification goes out exactly when the write becomes visible. Each node
//! keeps one extra connection that LISTENs and hands the keys to its read cache. When that
//! connection drops, notifications may be missed: the node is told at once
//! ([`Invalidation::Lost`]: stop caching) and again when the listener is back
//! ([`Invalidation::All`]: start over with an empty cache).

use std::time::Duration;

use custos_storage::{Invalidation, Revision};
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, NoTls};

pub(crate) const CHANNEL: &str = "custos_invalidate";
/// PostgreSQL refuses payloads of 8000 bytes or more; past this we invalidate everything.
const MAX_PAYLOAD: usize = 7900;
const ALL: &str = "*";
/// Starts the first line of a payload that carries the commit's revision: `@<revision>`.
const REVISION_MARK: char = '@';

/// The NOTIFY payload for a commit at `revision` of these keys: a first line `@<revision>`, then
/// the keys one per line, or `*` when they do not fit (or a key holds a newline).
///
/// Payloads without the revision line (written by older nodes) are still understood.
pub(crate) fn payload<'a>(revision: Revision, keys: impl Iterator<Item = &'a str>) -> String {
    let head = format!("{REVISION_MARK}{revision}\n");
    let mut payload = head.clone();
    for key in keys {
        if key.contains('\n') || key == ALL || payload.len() + key.len() + 1 > MAX_PAYLOAD {
            return format!("{head}{ALL}");
        }
        if payload.len() > head.len() {
            payload.push('\n');
        }
        payload.push_str(key);
    }
    payload
}

pub(crate) fn parse(payload: &str) -> Invalidation {
    let (revision, body) = match payload.split_once('\n') {
        Some((first, rest)) => match first
            .strip_prefix(REVISION_MARK)
            .and_then(|number| number.parse::<u64>().ok())
        {
            Some(number) => (Some(Revision(number)), rest),
            None => (None, payload),
        },
        None => (None, payload),
    };
    if body == ALL {
        Invalidation::All { revision }
    } else {
        Invalidation::Keys {
            keys: body.split('\n').map(str::to_owned).collect(),
            revision,
        }
    }
}

/// Runs the listener until the receiver is dropped, reconnecting with a back-off.
pub(crate) async fn listen(
    config: tokio_postgres::Config,
    sender: mpsc::UnboundedSender<Invalidation>,
) {
    let mut config = config;
    config.application_name("custos-listener");
    // A silent network partition must not leave the node caching for long.
    config.keepalives(true);
    config.keepalives_idle(Duration::from_secs(10));
    let mut backoff = Duration::from_millis(100);
    loop {
        if sender.is_closed() {
            return;
        }
        match config.connect(NoTls).await {
            Ok((client, mut connection)) => {
                let (done_sender, mut done) = tokio::sync::oneshot::channel::<()>();
                let forward = sender.clone();
                let pump = tokio::spawn(async move {
                    while let Some(message) =
                        std::future::poll_fn(|cx| connection.poll_message(cx)).await
                    {
                        match message {
                            Ok(AsyncMessage::Notification(notification)) => {
                                if forward.send(parse(notification.payload())).is_err() {
                                    break;
                                }
                            }
                            Ok(_) => {}
                            Err(error) => {
                                tracing::warn!(%error, "postgres invalidation listener lost its connection");
                                break;
                            }
                        }
                    }
                    let _ = done_sender.send(());
                });
                match client.batch_execute(&format!("LISTEN {CHANNEL}")).await {
                    Ok(()) => {
                        backoff = Duration::from_millis(100);
                        // Anything written while we were not listening is unknown: forget it all.
                        if sender.send(Invalidation::All { revision: None }).is_err() {
                            pump.abort();
                            return;
                        }
                        tracing::debug!("postgres invalidation listener connected");
                        tokio::select! {
                            _ = &mut done => {}
                            () = sender.closed() => {
                                pump.abort();
                                return;
                            }
                        }
                    }
                    Err(error) => {
                        tracing::warn!(%error, "postgres invalidation listener cannot LISTEN");
                        pump.abort();
                    }
                }
                drop(client);
            }
            Err(error) => {
                tracing::warn!(%error, "postgres invalidation listener cannot connect");
            }
        }
        // The cache cannot be trusted while we are deaf.
        if sender.send(Invalidation::Lost).is_err() {
            return;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip_or_fall_back_to_all() {
        let keys = ["a/b", "c"];
        assert_eq!(
            parse(&payload(Revision(7), keys.into_iter())),
            Invalidation::Keys {
                keys: vec!["a/b".into(), "c".into()],
                revision: Some(Revision(7)),
            }
        );
        assert_eq!(payload(Revision(8), ["x\ny"].into_iter()), "@8\n*");
        assert_eq!(
            parse("@8\n*"),
            Invalidation::All {
                revision: Some(Revision(8))
            }
        );
        let many: Vec<String> = (0..2000).map(|i| format!("key/{i}")).collect();
        assert_eq!(
            parse(&payload(Revision(9), many.iter().map(String::as_str))),
            Invalidation::All {
                revision: Some(Revision(9))
            }
        );
    }

    #[test]
    fn payloads_of_older_nodes_without_a_revision_still_parse() {
        assert_eq!(parse("*"), Invalidation::All { revision: None });
        assert_eq!(
            parse("a/b\nc"),
            Invalidation::Keys {
                keys: vec!["a/b".into(), "c".into()],
                revision: None,
            }
        );
        // A key that merely starts with the mark is a key.
        assert_eq!(
            parse("@x\nc"),
            Invalidation::Keys {
                keys: vec!["@x".into(), "c".into()],
                revision: None,
            }
        );
    }
}
