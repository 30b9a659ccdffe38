//! Cross-node cache invalidation over PostgreSQL's LISTEN/NOTIFY.
//!
//! Every committed write sends `NOTIFY custos_invalidate` with the keys it wrote, inside its own
//! transaction, so the notification goes out exactly when the write becomes visible. Each node
//! keeps one extra connection that LISTENs and hands the keys to its read cache. When that
//! connection drops, notifications may be missed: the node is told at once
//! ([`Invalidation::Lost`]: stop caching) and again when the listener is back
//! ([`Invalidation::All`]: start over with an empty cache).

use std::time::Duration;

use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, NoTls};

pub(crate) const CHANNEL: &str = "custos_invalidate";
/// PostgreSQL refuses payloads of 8000 bytes or more; past this we invalidate everything.
const MAX_PAYLOAD: usize = 7900;
const ALL: &str = "*";

/// What a node's cache must forget.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Invalidation {
    /// These keys changed.
    Keys(Vec<String>),
    /// The listener is (again) connected: forget everything and cache again.
    All,
    /// The listener lost its connection: forget everything and stop caching until `All`.
    Lost,
}

/// The NOTIFY payload for a write of these keys: newline-separated, or `*` when they do not fit
/// (or a key holds a newline).
pub(crate) fn payload<'a>(keys: impl Iterator<Item = &'a str>) -> String {
    let mut payload = String::new();
    for key in keys {
        if key.contains('\n') || key == ALL || payload.len() + key.len() + 1 > MAX_PAYLOAD {
            return ALL.to_owned();
        }
        if !payload.is_empty() {
            payload.push('\n');
        }
        payload.push_str(key);
    }
    payload
}

pub(crate) fn parse(payload: &str) -> Invalidation {
    if payload == ALL {
        Invalidation::All
    } else {
        Invalidation::Keys(payload.split('\n').map(str::to_owned).collect())
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
                        if sender.send(Invalidation::All).is_err() {
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
            parse(&payload(keys.into_iter())),
            Invalidation::Keys(vec!["a/b".into(), "c".into()])
        );
        assert_eq!(payload(["x\ny"].into_iter()), "*");
        assert_eq!(parse("*"), Invalidation::All);
        let many: Vec<String> = (0..2000).map(|i| format!("key/{i}")).collect();
        assert_eq!(payload(many.iter().map(String::as_str)), "*");
    }
}
