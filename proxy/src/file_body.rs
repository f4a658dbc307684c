//! The HTTP body of a cached file streamed from disk, pulled by the connection one chunk at a
//! time.
//!
//! hyper asks a body for its next chunk only when it has room to send it, so a client that
//! stops reading simply stops being asked: nothing waits on the client but its connection's
//! task, which holds no thread. What a stalled download holds is its open file and the one
//! chunk hyper could not send yet (at most [`CHUNK`] bytes; hyper's own write buffer is capped
//! in `listener`), so memory per slow client is bounded and small.
//!
//! Each chunk is first read with `preadv2(RWF_NOWAIT)` on the connection's own thread: data in
//! the page cache (every warm hit) is copied without a hop to another thread. When the data is
//! not cached (the kernel answers EAGAIN rather than wait for the disk) or the file system
//! cannot tell (EOPNOTSUPP), one `pread` of one chunk runs on tokio's blocking pool.
//!
//! Why the blocking pool is shared with cache lookups (no separate pool, no smaller bound):
//! after this change nothing in the proxy holds a blocking thread longer than one disk
//! operation — an open, a stat, a read of one small file or of one chunk — so the pool (512
//! threads) can only run out when the disk itself stops answering. A separate pool for
//! lookups would then wait on the same disk; it would only add a second queue to size. The
//! admin port's `/healthz` runs a stat through this same pool within a deadline
//! ([`crate::liveness`]), so a member whose disk or pool is stuck stops saying ok.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};

use crate::cache::HeldFile;
use crate::cache::nowait::{self, Nowait};
use crate::listener::send_queue::{self, DeepQueue};
use http_body::{Frame, SizeHint};
use tokio::task::JoinHandle;

/// Largest chunk read and handed to the connection at once: what one stalled client holds
/// (a body with a deep send queue reads [`send_queue::DEEP_CHUNK`]; at most
/// [`send_queue::DEEP_MAX`] do at once).
pub const CHUNK: usize = 32 << 10;

/// A cached file's bytes `0..len`, read as the connection asks for them.
pub struct FileBody {
    file: Arc<HeldFile>,
    offset: u64,
    len: u64,
    /// False once the file system said it cannot read without blocking.
    nowait: bool,
    /// The blocking read of the next chunk, when the page cache did not have it.
    reading: Option<JoinHandle<io::Result<Bytes>>>,
    /// A large body's deeper kernel send queue, while it is sent.
    deep: Option<DeepQueue>,
}

impl FileBody {
    /// `len` is the size the file had when it was opened (the Content-Length already sent).
    pub fn new(file: Arc<HeldFile>, len: u64) -> FileBody {
        FileBody {
            file,
            offset: 0,
            len,
            nowait: true,
            reading: None,
            deep: send_queue::deepen(len),
        }
    }

    fn next_len(&self) -> usize {
        let chunk = match self.deep {
            Some(_) => send_queue::DEEP_CHUNK,
            None => CHUNK,
        };
        (self.len - self.offset).min(chunk as u64) as usize
    }

    /// Accounts for a chunk read at `offset`. A file shorter than announced is an error, so the
    /// client sees a cut connection rather than a short body it might take for whole.
    fn advance(&mut self, chunk: Bytes) -> io::Result<Frame<Bytes>> {
        if chunk.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "cached file ended at byte {} of {}: it changed while being served",
                    self.offset, self.len
                ),
            ));
        }
        self.offset += chunk.len() as u64;
        if self.offset >= self.len
            && let Some(deep) = &mut self.deep
        {
            // hyper asks no further once `is_end_stream` says so.
            deep.finish();
        }
        Ok(Frame::data(chunk))
    }
}

fn read_blocking(file: &File, len: usize, offset: u64) -> io::Result<Bytes> {
    let mut buf = BytesMut::zeroed(len);
    let n = file.read_at(&mut buf, offset)?;
    buf.truncate(n);
    Ok(buf.freeze())
}

impl http_body::Body for FileBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = &mut *self;
        if this.reading.is_none() {
            let len = this.next_len();
            if len == 0 {
                return Poll::Ready(None);
            }
            if this.nowait {
                match nowait::read_at(&this.file, len, this.offset) {
                    Nowait::Read(chunk) => return Poll::Ready(Some(this.advance(chunk))),
                    Nowait::WouldBlock => {}
                    Nowait::Unsupported => this.nowait = false,
                    Nowait::Failed(e) => return Poll::Ready(Some(Err(e))),
                }
            }
            let file = this.file.clone();
            let offset = this.offset;
            this.reading = Some(tokio::task::spawn_blocking(move || {
                read_blocking(&file, len, offset)
            }));
        }
        let reading = this.reading.as_mut().expect("a read is in flight");
        let joined = ready!(Pin::new(reading).poll(cx));
        this.reading = None;
        let chunk = match joined {
            Ok(Ok(chunk)) => chunk,
            Ok(Err(e)) => return Poll::Ready(Some(Err(e))),
            Err(e) => return Poll::Ready(Some(Err(io::Error::other(e)))),
        };
        Poll::Ready(Some(this.advance(chunk)))
    }

    fn is_end_stream(&self) -> bool {
        self.offset >= self.len
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.len - self.offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body::Body as _;

    /// The whole body, checking every chunk's bound.
    async fn collect(mut body: FileBody) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await
        {
            let chunk = frame?.into_data().expect("data frames only");
            assert!(chunk.len() <= CHUNK, "a chunk is at most CHUNK bytes");
            out.extend_from_slice(&chunk);
        }
        assert!(body.is_end_stream());
        Ok(out)
    }

    fn file_with(bytes: &[u8]) -> (tempfile::NamedTempFile, File) {
        let mut tmp = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut tmp, bytes).unwrap();
        let file = File::open(tmp.path()).unwrap();
        (tmp, file)
    }

    #[tokio::test]
    async fn streams_the_whole_file_in_bounded_chunks() {
        let data: Vec<u8> = (0..(CHUNK * 3 + 123)).map(|i| (i * 7) as u8).collect();
        let (_tmp, file) = file_with(&data);
        let body = FileBody::new(Arc::new(HeldFile::new(file)), data.len() as u64);
        assert_eq!(body.size_hint().exact(), Some(data.len() as u64));
        assert_eq!(collect(body).await.unwrap(), data);
    }

    #[tokio::test]
    async fn the_blocking_path_reads_the_same_bytes() {
        let data: Vec<u8> = (0..(CHUNK + 5)).map(|i| (i * 13) as u8).collect();
        let (_tmp, file) = file_with(&data);
        let mut body = FileBody::new(Arc::new(HeldFile::new(file)), data.len() as u64);
        body.nowait = false;
        assert_eq!(collect(body).await.unwrap(), data);
    }

    #[tokio::test]
    async fn a_file_that_shrank_is_an_error_not_a_short_body() {
        let (tmp, file) = file_with(&[1u8; 1000]);
        let body = FileBody::new(Arc::new(HeldFile::new(file)), 1000);
        std::fs::OpenOptions::new()
            .write(true)
            .open(tmp.path())
            .unwrap()
            .set_len(10)
            .unwrap();
        let err = collect(body).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof, "{err}");
    }

    #[tokio::test]
    async fn an_empty_file_ends_at_once() {
        let (_tmp, file) = file_with(&[]);
        let body = FileBody::new(Arc::new(HeldFile::new(file)), 0);
        assert!(body.is_end_stream());
        assert!(collect(body).await.unwrap().is_empty());
    }
}
