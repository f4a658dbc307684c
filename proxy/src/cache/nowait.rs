//! Reads of cached files that never wait for the disk.
//!
//! A warm hit's bytes are in the page cache, and copying them out takes microseconds: doing it
//! on the connection's own thread saves a hop to tokio's blocking pool (a wake-up, a context
//! switch and a wake-up back) per request. `preadv2(RWF_NOWAIT)` reads only what is cached;
//! anything else the caller reads on the blocking pool.

use std::fs::File;
use std::io;

use bytes::{Bytes, BytesMut};

/// What a read that must not block got.
pub enum Nowait {
    /// The bytes read (fewer than asked when only part was cached or the file ended).
    Read(Bytes),
    /// Not in the page cache: read it on the blocking pool.
    WouldBlock,
    /// The file system cannot read without blocking: always use the blocking pool.
    Unsupported,
    Failed(io::Error),
}

/// Reads up to `len` bytes at `offset`, only from the page cache.
pub fn read_at(file: &File, len: usize, offset: u64) -> Nowait {
    use rustix::io::{Errno, ReadWriteFlags};
    let mut buf = BytesMut::zeroed(len);
    let read = rustix::io::preadv2(
        file,
        &mut [io::IoSliceMut::new(&mut buf)],
        offset,
        ReadWriteFlags::NOWAIT,
    );
    match read {
        Ok(n) => {
            buf.truncate(n);
            Nowait::Read(buf.freeze())
        }
        Err(Errno::AGAIN) => Nowait::WouldBlock,
        // Kernels before 4.14 (EINVAL: unknown flag), file systems without NOWAIT reads.
        Err(Errno::OPNOTSUPP | Errno::INVAL | Errno::NOSYS) => Nowait::Unsupported,
        Err(e) => Nowait::Failed(e.into()),
    }
}

/// The whole of a small file of `len` bytes if the page cache has all of it.
pub fn read_whole(file: &File, len: u64) -> Option<Bytes> {
    match read_at(file, usize::try_from(len).ok()?, 0) {
        Nowait::Read(bytes) if bytes.len() as u64 == len => Some(bytes),
        _ => None,
    }
}
