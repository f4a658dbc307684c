//! Writing a download: streamed to a temporary file in its final directory, read back for
//! verification, then committed (fsync, rename, fsync of the directory) or dropped.
//!
//! A download never depends on the cache being writable: when the cache cannot take a file
//! (disk full, read-only, failing) the writer carries on in a *loose* file outside it (an
//! unlinked file in the temporary directory, or memory when even that fails), so the bytes are
//! still bounded, verified and shared by every waiter; they are just not kept.

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use bytes::Bytes;
use futures::{Stream, StreamExt};

use super::fs::Dir;
use super::{Cache, CacheError, CacheKey, CachedFile, etag};

/// Bytes gathered before one blocking write. Each fill in flight holds one batch: at 1 MiB
/// (grown to 2 MiB by the chunk that overflowed it) the bench's eight concurrent fills held
/// ~6 MB of batches, half of all memory in use (docs/benchmarks/notes.md, "Memory"); a quarter
/// of it still makes the blocking-pool hop rare next to the network reads that fill it.
const WRITE_BATCH: usize = 256 << 10;
/// Most bytes held in memory by loose files at once, when not even the temporary directory
/// can take them (a full disk under both).
const MAX_MEMORY_LOOSE: u64 = 256 << 20;
static MEMORY_LOOSE: AtomicU64 = AtomicU64::new(0);

/// Why streaming into a writer stopped.
#[derive(Debug, thiserror::Error)]
pub enum StreamError<E> {
    /// The source failed (an upstream cut the body short, timed out, ...).
    #[error("{0}")]
    Source(E),
    /// The body passed the limit it must keep to.
    #[error("larger than {limit} bytes")]
    TooLarge { limit: u64 },
    /// Neither the cache nor a loose file could take the bytes.
    #[error("cannot keep the download anywhere: {0}")]
    Local(io::Error),
}

/// A file being written. Dropped without [`CacheWriter::commit`], it leaves nothing behind.
pub struct CacheWriter {
    /// None only while a blocking write owns it.
    inner: Option<Inner>,
}

struct Inner {
    file: File,
    target: Target,
    written: u64,
}

enum Target {
    /// A temporary file in the directory of its final name `name`.
    Cache {
        cache: Arc<Cache>,
        key: CacheKey,
        tmp: TmpFile,
        name: String,
    },
    /// Outside the cache: an unlinked file, or memory (then its bytes are `charged`).
    Loose { key: CacheKey, charged: Charge },
}

/// A temporary file's name in its directory; removed when dropped unless renamed.
struct TmpFile {
    dir: Dir,
    name: String,
    renamed: bool,
}

impl Drop for TmpFile {
    fn drop(&mut self) {
        if !self.renamed {
            let _ = self.dir.remove(&self.name);
        }
    }
}

/// Bytes of memory files counted against [`MAX_MEMORY_LOOSE`]; given back when dropped.
#[derive(Debug, Default)]
pub struct Charge {
    bytes: u64,
    memory: bool,
}

impl Charge {
    fn add(&mut self, n: u64) -> io::Result<()> {
        if !self.memory {
            return Ok(());
        }
        let before = MEMORY_LOOSE.fetch_add(n, Ordering::Relaxed);
        if before + n > MAX_MEMORY_LOOSE {
            MEMORY_LOOSE.fetch_sub(n, Ordering::Relaxed);
            return Err(io::Error::new(
                io::ErrorKind::StorageFull,
                format!(
                    "neither the cache nor the temporary directory can take downloads, and \
                     {MAX_MEMORY_LOOSE} bytes of them are already held in memory"
                ),
            ));
        }
        self.bytes += n;
        Ok(())
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        MEMORY_LOOSE.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

/// An open file being served, shared by its readers (positional reads only). A memory file
/// gives its bytes back to the budget when the last reader is done.
#[derive(Debug)]
pub struct HeldFile {
    file: File,
    _charge: Charge,
}

impl HeldFile {
    /// A file on disk (not charged against the memory budget).
    pub fn new(file: File) -> HeldFile {
        HeldFile {
            file,
            _charge: Charge::default(),
        }
    }
}

impl std::ops::Deref for HeldFile {
    type Target = File;
    fn deref(&self) -> &File {
        &self.file
    }
}

/// A whole, verified file, ready to serve to any number of readers at once. In the cache when
/// `cached`, else a loose file that lives as long as its readers.
#[derive(Debug, Clone)]
pub struct ServedFile {
    pub file: Arc<HeldFile>,
    pub len: u64,
    pub etag: String,
    pub cached: bool,
}

impl ServedFile {
    /// A cache hit, opened for serving.
    pub fn from_hit(hit: CachedFile) -> ServedFile {
        ServedFile {
            file: Arc::new(HeldFile::new(hit.file)),
            len: hit.len,
            etag: hit.etag,
            cached: true,
        }
    }
}

impl CacheWriter {
    pub(super) fn in_cache(cache: Arc<Cache>, key: CacheKey) -> Result<CacheWriter, CacheError> {
        let (dir_rel, name) = key
            .as_str()
            .rsplit_once('/')
            .expect("cache keys have a directory");
        let dir = cache
            .root
            .create_dir_all(std::path::Path::new(dir_rel))
            .map_err(|e| cache.note_error(CacheError::io(&key, e)))?;
        let n = cache.tmp_counter.fetch_add(1, Ordering::Relaxed);
        let tmp = format!("{}{}-{n}", super::scan::TMP_PREFIX, std::process::id());
        let file = dir
            .create_new(&tmp)
            .map_err(|e| cache.note_error(CacheError::io(&key, e)))?;
        let tmp = TmpFile {
            dir,
            name: tmp,
            renamed: false,
        };
        let name = name.to_string();
        Ok(CacheWriter::from(Inner {
            file,
            target: Target::Cache {
                cache,
                key,
                tmp,
                name,
            },
            written: 0,
        }))
    }

    /// A writer outside the cache: an unlinked file in the temporary directory, or memory.
    pub fn loose(key: CacheKey) -> io::Result<CacheWriter> {
        Inner::loose(key).map(CacheWriter::from)
    }

    fn from(inner: Inner) -> CacheWriter {
        CacheWriter { inner: Some(inner) }
    }

    fn inner(&mut self) -> &mut Inner {
        self.inner.as_mut().expect("writer in use")
    }

    /// Writes bytes (blocking). A failure of the cache turns this writer loose (what was
    /// written so far is copied over); only a failure of the loose file is an error.
    pub fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.inner().write_all(bytes)
    }

    /// Streams `body` in, in batches of [`WRITE_BATCH`] written from the blocking pool, keeping
    /// to `limit` bytes. Returns the number of bytes written.
    pub async fn write_stream<S, E>(&mut self, body: S, limit: u64) -> Result<u64, StreamError<E>>
    where
        S: Stream<Item = Result<Bytes, E>>,
    {
        self.write_stream_observed(body, limit, |_| {}).await
    }

    /// [`CacheWriter::write_stream`], telling `written` the bytes in the file after each batch.
    pub async fn write_stream_observed<S, E>(
        &mut self,
        body: S,
        limit: u64,
        mut written_so_far: impl FnMut(u64),
    ) -> Result<u64, StreamError<E>>
    where
        S: Stream<Item = Result<Bytes, E>>,
    {
        let mut in_file: u64 = 0;
        let mut body = std::pin::pin!(body);
        let mut batch: Vec<u8> = Vec::with_capacity(WRITE_BATCH);
        let mut total: u64 = 0;
        loop {
            let next = body.next().await;
            let done = next.is_none();
            let mut pending = None;
            if let Some(chunk) = next {
                let chunk = chunk.map_err(StreamError::Source)?;
                total += chunk.len() as u64;
                if total > limit {
                    return Err(StreamError::TooLarge { limit });
                }
                // A chunk that would overflow the batch waits for the next one, so the batch
                // never reallocates to twice its size.
                if batch.len() + chunk.len() > WRITE_BATCH && !batch.is_empty() {
                    pending = Some(chunk);
                } else {
                    batch.extend_from_slice(&chunk);
                }
            }
            if batch.len() >= WRITE_BATCH || pending.is_some() || (done && !batch.is_empty()) {
                let data = std::mem::replace(&mut batch, Vec::with_capacity(WRITE_BATCH));
                let data_len = data.len();
                let mut inner = self.inner.take().expect("writer in use");
                let (inner, written) = tokio::task::spawn_blocking(move || {
                    let r = inner.write_all(&data);
                    (inner, r)
                })
                .await
                .map_err(|e| StreamError::Local(io::Error::other(e)))?;
                self.inner = Some(inner);
                written.map_err(StreamError::Local)?;
                in_file += data_len as u64;
                written_so_far(in_file);
                if let Some(chunk) = pending {
                    batch.extend_from_slice(&chunk);
                }
            }
            if done {
                return Ok(total);
            }
        }
    }

    /// A handle for reading what was written (for verification), with positional reads
    /// (`read_at`) or from its own offset: either way the writer is not disturbed.
    pub fn reader(&mut self) -> io::Result<File> {
        self.inner().file.try_clone()
    }

    /// Whether what is written goes into the cache (false once it has turned loose).
    pub fn is_cached(&self) -> bool {
        matches!(
            self.inner.as_ref().map(|i| &i.target),
            Some(Target::Cache { .. })
        )
    }

    /// The written bytes, ready to serve before [`CacheWriter::commit`] has made them durable
    /// (the fsync is what a client would wait for): a second handle on the same file, with
    /// the validator the committed file will have. None for a loose writer, whose commit does
    /// not wait for the disk.
    pub fn served_before_commit(&self) -> Option<ServedFile> {
        let inner = self.inner.as_ref()?;
        let Target::Cache { key, .. } = &inner.target else {
            return None;
        };
        let file = inner.file.try_clone().ok()?;
        let modified = file.metadata().and_then(|m| m.modified()).ok()?;
        Some(ServedFile {
            etag: etag(key.as_str(), inner.written, modified),
            file: Arc::new(HeldFile::new(file)),
            len: inner.written,
            cached: true,
        })
    }

    /// Makes the file available: in the cache, fsynced and renamed under its final name (the
    /// directory fsynced too); a loose file, or a cache file whose commit failed, is served
    /// without being kept.
    pub fn commit(mut self) -> ServedFile {
        self.inner.take().expect("writer in use").commit()
    }
}

impl Inner {
    fn loose(key: CacheKey) -> io::Result<Inner> {
        let (file, memory) = match tempfile::tempfile() {
            Ok(f) => (f, false),
            Err(_) => {
                let fd =
                    rustix::fs::memfd_create("modfleet-download", rustix::fs::MemfdFlags::CLOEXEC)?;
                (File::from(fd), true)
            }
        };
        let charged = Charge { bytes: 0, memory };
        Ok(Inner {
            file,
            target: Target::Loose { key, charged },
            written: 0,
        })
    }

    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        if let Target::Loose { charged, .. } = &mut self.target {
            charged.add(bytes.len() as u64)?;
        }
        match self.file.write_all(bytes) {
            Ok(()) => {
                self.written += bytes.len() as u64;
                Ok(())
            }
            Err(e) => {
                self.go_loose(e)?;
                self.write_all(bytes)
            }
        }
    }

    /// Moves to a loose file after the cache failed with `e`: copies what was written.
    fn go_loose(&mut self, e: io::Error) -> io::Result<()> {
        let Target::Cache { cache, key, .. } = &self.target else {
            return Err(e);
        };
        cache.note_error(CacheError::io(key, e));
        let mut loose = Inner::loose(key.clone())?;
        let mut buf = vec![0u8; 256 << 10];
        let mut at = 0u64;
        while at < self.written {
            let want = buf.len().min((self.written - at) as usize);
            self.file.read_exact_at(&mut buf[..want], at)?;
            loose.write_all(&buf[..want])?;
            at += want as u64;
        }
        // Dropping the old state removes its temporary file from the cache.
        *self = loose;
        Ok(())
    }

    fn commit(self) -> ServedFile {
        let Inner {
            file,
            target,
            written: len,
        } = self;
        match target {
            Target::Cache {
                cache,
                key,
                mut tmp,
                name,
            } => {
                let committed = file
                    .sync_all()
                    .and_then(|()| tmp.dir.rename(&tmp.name, &name))
                    .map(|()| tmp.renamed = true)
                    .and_then(|()| tmp.dir.sync());
                if let Err(e) = committed {
                    cache.note_error(CacheError::io(&key, e));
                    if !tmp.renamed {
                        return loose_file(file, &key, len, Charge::default());
                    }
                }
                let modified = file
                    .metadata()
                    .and_then(|m| m.modified())
                    .unwrap_or(SystemTime::UNIX_EPOCH);
                cache.committed(&key, len);
                ServedFile {
                    etag: etag(key.as_str(), len, modified),
                    file: Arc::new(HeldFile {
                        file,
                        _charge: Charge::default(),
                    }),
                    len,
                    cached: true,
                }
            }
            Target::Loose { key, charged } => loose_file(file, &key, len, charged),
        }
    }
}

fn loose_file(file: File, key: &CacheKey, len: u64, charge: Charge) -> ServedFile {
    ServedFile {
        etag: etag(key.as_str(), len, SystemTime::now()),
        file: Arc::new(HeldFile {
            file,
            _charge: charge,
        }),
        len,
        cached: false,
    }
}
