//! Streaming a zip to peers while it is fetched. Each zip download attempt publishes how far
//! its file is written ([`Tails::watch`], [`Slot::claim`]); the owner's answer to a peer
//! request reads the same file from the start as it grows, so the peer's member is not kept
//! waiting for the whole body (and then the time it takes to pass it on). The bytes are not
//! yet verified: the peer verifies them as it would an upstream's, and an attempt that fails
//! cuts the stream short, which the peer takes as "fetch it yourself".

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use tokio::sync::watch;

use crate::cache::nowait::{self, Nowait};

/// Most bytes read and sent at once.
const CHUNK: u64 = 256 << 10;

/// How far one download attempt has written its file.
#[derive(Clone)]
pub(super) enum TailState {
    /// No attempt is writing yet.
    Waiting,
    Writing {
        file: Arc<File>,
        written: u64,
    },
    /// The body is whole (not verified yet).
    Done {
        file: Arc<File>,
        len: u64,
    },
    /// The attempt failed or was cancelled: what was sent is not the answer.
    Failed,
}

type Slots = Arc<Mutex<HashMap<String, Weak<Slot>>>>;

/// The zips being written, by cache key.
#[derive(Default)]
pub(super) struct Tails {
    slots: Slots,
}

impl Tails {
    /// The slot of `key`, made when there is none; it lives while anyone holds it.
    pub(super) fn watch(&self, key: &str) -> Arc<Slot> {
        let mut slots = self.slots.lock().expect("tails poisoned");
        if let Some(slot) = slots.get(key).and_then(Weak::upgrade) {
            return slot;
        }
        let slot = Arc::new(Slot {
            key: key.to_string(),
            state: watch::channel(TailState::Waiting).0,
            slots: Arc::downgrade(&self.slots),
        });
        slots.insert(key.to_string(), Arc::downgrade(&slot));
        slot
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.slots.lock().unwrap().len()
    }
}

pub(super) struct Slot {
    key: String,
    state: watch::Sender<TailState>,
    slots: Weak<Mutex<HashMap<String, Weak<Slot>>>>,
}

impl Slot {
    /// Makes `file` the one this slot follows, unless another attempt (a hedge) has already
    /// claimed it.
    pub(super) fn claim(self: &Arc<Self>, file: File) -> Option<TailWriter> {
        let file = Arc::new(file);
        let claimed = self.state.send_if_modified(|s| match s {
            TailState::Waiting => {
                *s = TailState::Writing {
                    file: file.clone(),
                    written: 0,
                };
                true
            }
            _ => false,
        });
        claimed.then(|| TailWriter {
            slot: self.clone(),
            file,
            done: false,
        })
    }

    pub(super) fn subscribe(&self) -> watch::Receiver<TailState> {
        self.state.subscribe()
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(slots) = self.slots.upgrade()
            && let Ok(mut slots) = slots.lock()
            && slots.get(&self.key).is_some_and(|w| w.strong_count() == 0)
        {
            slots.remove(&self.key);
        }
    }
}

/// The writing side, held by the attempt: reports progress; dropped before [`TailWriter::done`]
/// it marks the slot failed.
pub(super) struct TailWriter {
    slot: Arc<Slot>,
    file: Arc<File>,
    done: bool,
}

impl TailWriter {
    pub(super) fn written(&self, written: u64) {
        let file = self.file.clone();
        self.slot
            .state
            .send_replace(TailState::Writing { file, written });
    }

    pub(super) fn done(mut self, len: u64) {
        self.done = true;
        let file = self.file.clone();
        self.slot.state.send_replace(TailState::Done { file, len });
    }
}

impl Drop for TailWriter {
    fn drop(&mut self) {
        if !self.done {
            self.slot.state.send_replace(TailState::Failed);
        }
    }
}

/// The file as it is written, from its first byte; ends when the body is whole, fails when
/// the attempt fails or nothing is written for `idle`. Holds the slot while it streams.
pub(super) fn stream(
    slot: Arc<Slot>,
    idle: Duration,
) -> impl Stream<Item = io::Result<Bytes>> + Send + 'static {
    let rx = slot.subscribe();
    futures::stream::try_unfold((slot, rx, 0u64), move |(slot, mut rx, sent)| async move {
        loop {
            let state = rx.borrow_and_update().clone();
            let (file, available, whole) = match state {
                TailState::Waiting => (None, 0, false),
                TailState::Writing { file, written } => (Some(file), written, false),
                TailState::Done { file, len } => (Some(file), len, true),
                TailState::Failed => {
                    return Err(io::Error::other("the upstream fetch failed"));
                }
            };
            if let Some(file) = file
                && available > sent
            {
                let want = (available - sent).min(CHUNK);
                let chunk = read(file, sent, want).await?;
                let next = sent + chunk.len() as u64;
                return Ok(Some((chunk, (slot, rx, next))));
            }
            if whole {
                return Ok(None);
            }
            match tokio::time::timeout(idle, rx.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(io::Error::other("the fetch ended")),
                Err(_) => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("nothing written for {idle:?}"),
                    ));
                }
            }
        }
    })
}

/// Up to `want` bytes at `offset`. Bytes just written are in the page cache, so the read
/// is first tried without waiting for the disk on this thread ([`nowait`]); otherwise
/// `want` bytes are read on the blocking pool.
async fn read(file: Arc<File>, offset: u64, want: u64) -> io::Result<Bytes> {
    match nowait::read_at(&file, want as usize, offset) {
        Nowait::Read(chunk) if !chunk.is_empty() => return Ok(chunk),
        Nowait::Failed(e) => return Err(e),
        Nowait::Read(_) | Nowait::WouldBlock | Nowait::Unsupported => {}
    }
    tokio::task::spawn_blocking(move || read_at(&file, offset, want))
        .await
        .map_err(io::Error::other)?
}

/// Reads `want` bytes at `offset`; a short file (the writer moved to another file) is an error.
fn read_at(file: &File, offset: u64, want: u64) -> io::Result<Bytes> {
    let mut buf = vec![0u8; want as usize];
    file.read_exact_at(&mut buf, offset)?;
    Ok(Bytes::from(buf))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use futures::StreamExt;

    use super::*;

    fn temp() -> (File, File) {
        let f = tempfile::tempfile().unwrap();
        let r = f.try_clone().unwrap();
        (f, r)
    }

    #[tokio::test]
    async fn a_reader_gets_every_byte_as_it_is_written_then_the_end() {
        let tails = Tails::default();
        let slot = tails.watch("k");
        let (mut file, reader) = temp();
        let writer = slot.claim(reader).expect("first claim");
        assert!(
            slot.claim(temp().1).is_none(),
            "a second attempt cannot claim it"
        );
        let mut body = Box::pin(stream(tails.watch("k"), Duration::from_secs(5)));
        file.write_all(b"hello ").unwrap();
        writer.written(6);
        assert_eq!(body.next().await.unwrap().unwrap(), "hello ");
        file.write_all(b"world").unwrap();
        writer.done(11);
        assert_eq!(body.next().await.unwrap().unwrap(), "world");
        assert!(body.next().await.is_none());
        drop(body);
        drop(slot);
        assert_eq!(tails.len(), 0, "the slot is gone once nobody holds it");
    }

    #[tokio::test]
    async fn a_failed_attempt_cuts_the_stream() {
        let tails = Tails::default();
        let (mut file, reader) = temp();
        let writer = tails.watch("k").claim(reader).unwrap();
        let mut body = Box::pin(stream(tails.watch("k"), Duration::from_secs(5)));
        file.write_all(b"abc").unwrap();
        writer.written(3);
        assert_eq!(body.next().await.unwrap().unwrap(), "abc");
        drop(writer);
        assert!(body.next().await.unwrap().is_err());
    }

    #[tokio::test]
    async fn a_stalled_writer_times_out() {
        let tails = Tails::default();
        let (_file, reader) = temp();
        let _writer = tails.watch("k").claim(reader).unwrap();
        let mut body = Box::pin(stream(tails.watch("k"), Duration::from_millis(50)));
        let e = body.next().await.unwrap().unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test]
    async fn a_writer_that_claims_more_than_the_file_holds_is_an_error() {
        let tails = Tails::default();
        let (_file, reader) = temp();
        let writer = tails.watch("k").claim(reader).unwrap();
        let mut body = Box::pin(stream(tails.watch("k"), Duration::from_secs(5)));
        writer.done(10);
        assert!(body.next().await.unwrap().is_err());
    }
}
