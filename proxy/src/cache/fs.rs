//! File operations confined to the cache directory.
//!
//! The disk is as hostile as the network: a cached file (or a directory on the way to it)
//! replaced by a symlink must not make the proxy serve `/etc/passwd`, or write and delete files
//! outside the cache. Every path is resolved relative to an open handle on the cache root with
//! `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`, so no component may be a symlink or leave
//! the root; where the kernel lacks `openat2` (before 5.6, or filtered by seccomp), the same is
//! done one component at a time with `O_NOFOLLOW`. Only regular files are cache entries.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags};

/// Set once `openat2` answered ENOSYS: use the component-by-component walk from then on.
static NO_OPENAT2: AtomicBool = AtomicBool::new(false);
/// Set once `openat2` refused `RESOLVE_CACHED` (kernels before 5.12): no open without a hop.
static NO_RESOLVE_CACHED: AtomicBool = AtomicBool::new(false);

/// An open handle on the cache's `download/` directory.
#[derive(Debug)]
pub struct Root {
    fd: OwnedFd,
}

/// A directory under the root, open for creating, renaming and removing entries in it.
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
}

/// Why a relative path was refused before any file system call.
fn invalid(rel: &Path, why: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("refusing cache path {}: {why}", rel.display()),
    )
}

/// The path's components, each a plain name (no `/`, `.`, `..` or empty elements).
fn components(rel: &Path) -> io::Result<Vec<&OsStr>> {
    let mut out = Vec::new();
    for c in rel.components() {
        match c {
            Component::Normal(name) => out.push(name),
            _ => return Err(invalid(rel, "not a plain relative path")),
        }
    }
    if out.is_empty() {
        return Err(invalid(rel, "empty"));
    }
    Ok(out)
}

/// Opens the directory `name` under `parent`, never through a symlink.
fn open_dir(parent: BorrowedFd<'_>, name: &OsStr, rel: &Path) -> io::Result<OwnedFd> {
    rustix::fs::openat(
        parent,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| symlink_is_invalid(e, rel))
}

impl Root {
    /// Opens (creating it if needed) the directory `path`. It is the only path ever resolved
    /// from the process's working directory; symlinks in it are the administrator's choice.
    pub fn open(path: &Path) -> io::Result<Root> {
        std::fs::create_dir_all(path)?;
        let fd = rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Root { fd })
    }

    /// Opens a regular file for reading. A symlink anywhere on the way, or an entry that is not
    /// a regular file, is an error of kind `InvalidData`.
    pub fn open_file(&self, rel: &Path) -> io::Result<File> {
        let names = components(rel)?;
        regular(File::from(self.resolve(&names, OFlags::RDONLY)?), rel)
    }

    /// [`Root::open_file`] that never waits for the disk: it succeeds only when every
    /// component is in the kernel's lookup caches (`RESOLVE_CACHED`, Linux 5.12), as for
    /// every warm hit, so those are opened on the connection's own thread without a hop to
    /// the blocking pool. `WouldBlock` when the lookup would need the disk or the kernel
    /// cannot tell; the caller then uses [`Root::open_file`] on the blocking pool. A name
    /// known to be absent (a cached negative lookup) is `NotFound` here too.
    pub fn open_file_cached(&self, rel: &Path) -> io::Result<File> {
        if NO_OPENAT2.load(Ordering::Relaxed) || NO_RESOLVE_CACHED.load(Ordering::Relaxed) {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let rel: PathBuf = components(rel)?.into_iter().collect();
        let how = ResolveFlags::BENEATH
            | ResolveFlags::NO_SYMLINKS
            | ResolveFlags::NO_MAGICLINKS
            | ResolveFlags::CACHED;
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        match rustix::fs::openat2(&self.fd, &rel, flags, Mode::empty(), how) {
            Ok(fd) => regular(File::from(fd), &rel),
            Err(rustix::io::Errno::AGAIN) => Err(io::ErrorKind::WouldBlock.into()),
            Err(rustix::io::Errno::INVAL | rustix::io::Errno::NOSYS) => {
                NO_RESOLVE_CACHED.store(true, Ordering::Relaxed);
                Err(io::ErrorKind::WouldBlock.into())
            }
            Err(e) => Err(symlink_is_invalid(e, &rel)),
        }
    }

    /// Opens the directory `rel` (creating missing components, mode 0755) for writing into.
    pub fn create_dir_all(&self, rel: &Path) -> io::Result<Dir> {
        let names = components(rel)?;
        let mut dir: Option<OwnedFd> = None;
        for name in names {
            let parent = dir.as_ref().map_or(self.fd.as_fd(), |d| d.as_fd());
            match rustix::fs::mkdirat(parent, name, Mode::from_raw_mode(0o755)) {
                Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                Err(e) => return Err(e.into()),
            }
            dir = Some(open_dir(parent, name, rel)?);
        }
        Ok(Dir {
            fd: dir.expect("components() is never empty"),
        })
    }

    /// Opens `names` (all directories but the last) with `flags`, refusing symlinks.
    fn resolve(&self, names: &[&OsStr], flags: OFlags) -> io::Result<OwnedFd> {
        let flags = flags | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let rel: PathBuf = names.iter().collect();
        if !NO_OPENAT2.load(Ordering::Relaxed) {
            let how =
                ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
            match rustix::fs::openat2(&self.fd, &rel, flags, Mode::empty(), how) {
                Err(rustix::io::Errno::NOSYS) => NO_OPENAT2.store(true, Ordering::Relaxed),
                other => return other.map_err(|e| symlink_is_invalid(e, &rel)),
            }
        }
        let (last, dirs) = names.split_last().expect("components() is never empty");
        let mut dir: Option<OwnedFd> = None;
        for name in dirs {
            let parent = dir.as_ref().map_or(self.fd.as_fd(), |d| d.as_fd());
            dir = Some(open_dir(parent, name, &rel)?);
        }
        let parent = dir.as_ref().map_or(self.fd.as_fd(), |d| d.as_fd());
        rustix::fs::openat(parent, *last, flags, Mode::empty())
            .map_err(|e| symlink_is_invalid(e, &rel))
    }

    /// Removes the entry `rel` (a file, or a symlink itself: never what it points to, never
    /// through a symlinked directory).
    pub fn remove_file(&self, rel: &Path) -> io::Result<()> {
        let names = components(rel)?;
        let (last, dirs) = names.split_last().expect("components() is never empty");
        if dirs.is_empty() {
            return unlink(self.fd.as_fd(), last);
        }
        let dir = self.resolve(dirs, OFlags::RDONLY | OFlags::DIRECTORY)?;
        unlink(dir.as_fd(), last)
    }
}

fn unlink(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
    rustix::fs::unlinkat(dir, name, AtFlags::empty()).map_err(io::Error::from)
}

/// The opened entry, if it is a regular file (a cache entry); `InvalidData` otherwise.
fn regular(file: File, rel: &Path) -> io::Result<File> {
    let stat = rustix::fs::fstat(&file)?;
    if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
        return Err(not_regular(rel));
    }
    Ok(file)
}

/// ELOOP (a symlink where a directory or file was expected), EXDEV (a path leaving the root)
/// and ENOTDIR are the disk lying.
fn symlink_is_invalid(e: rustix::io::Errno, rel: &Path) -> io::Error {
    match e {
        rustix::io::Errno::LOOP | rustix::io::Errno::XDEV | rustix::io::Errno::NOTDIR => {
            not_regular(rel)
        }
        e => e.into(),
    }
}

fn not_regular(rel: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "{} is not a regular file in the cache (a symlink or special file on its path): \
             not served; `modfleet-proxy verify --purge` removes it",
            rel.display()
        ),
    )
}

impl Dir {
    /// Creates a new file `name` for writing and reading back (never through a symlink, never
    /// over an existing entry).
    pub fn create_new(&self, name: &str) -> io::Result<File> {
        let fd = rustix::fs::openat(
            &self.fd,
            name,
            OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o644),
        )?;
        Ok(File::from(fd))
    }

    /// Renames `from` to `to` within this directory (replacing `to`; a symlink there is
    /// replaced, not followed).
    pub fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        rustix::fs::renameat(&self.fd, from, &self.fd, to).map_err(io::Error::from)
    }

    /// Removes `name` from this directory.
    pub fn remove(&self, name: &str) -> io::Result<()> {
        unlink(self.fd.as_fd(), OsStr::new(name))
    }

    /// Makes this directory's entries durable (after a rename).
    pub fn sync(&self) -> io::Result<()> {
        rustix::fs::fsync(&self.fd).map_err(io::Error::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::unix::fs::symlink;

    #[test]
    fn regular_files_open_and_symlinks_anywhere_do_not() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), b"root:x:0:0").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(&dir.path().join("download")).unwrap();
        let d = root.create_dir_all(Path::new("example.com/m/@v")).unwrap();
        let mut f = d.create_new("v1.0.0.mod").unwrap();
        std::io::Write::write_all(&mut f, b"module example.com/m\n").unwrap();
        let mut text = String::new();
        root.open_file(Path::new("example.com/m/@v/v1.0.0.mod"))
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "module example.com/m\n");
        // Now in the lookup caches: opened without waiting for the disk, same bytes.
        let mut again = String::new();
        root.open_file_cached(Path::new("example.com/m/@v/v1.0.0.mod"))
            .unwrap()
            .read_to_string(&mut again)
            .unwrap();
        assert_eq!(again, text);
        // Absent (a cached negative lookup, or one the kernel would have to read for): never Ok.
        assert!(
            root.open_file(Path::new("example.com/m/@v/v9.mod"))
                .is_err()
        );
        let absent = root
            .open_file_cached(Path::new("example.com/m/@v/v9.mod"))
            .unwrap_err();
        assert!(
            matches!(
                absent.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::WouldBlock
            ),
            "{absent}"
        );

        let base = dir.path().join("download");
        // A symlinked file, a symlinked directory on the way, and a directory as an entry.
        symlink(
            outside.path().join("secret"),
            base.join("example.com/m/@v/v2.0.0.mod"),
        )
        .unwrap();
        symlink(outside.path(), base.join("evil.example")).unwrap();
        std::fs::create_dir(base.join("example.com/m/@v/v3.0.0.mod")).unwrap();
        for rel in [
            "example.com/m/@v/v2.0.0.mod",
            "evil.example/secret",
            "example.com/m/@v/v3.0.0.mod",
        ] {
            let e = root.open_file(Path::new(rel)).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{rel}: {e}");
            // Just looked up, so cached: refused the same way without the hop.
            let e = root.open_file_cached(Path::new(rel)).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{rel}: {e}");
        }
        // Creating through a symlinked directory is refused too, and nothing lands outside.
        assert!(root.create_dir_all(Path::new("evil.example/x")).is_err());
        assert!(!outside.path().join("x").exists());
        // Removing through it as well.
        assert!(root.remove_file(Path::new("evil.example/secret")).is_err());
        assert!(outside.path().join("secret").exists());
        // The symlink itself can be removed (what `verify --purge` does).
        root.remove_file(Path::new("example.com/m/@v/v2.0.0.mod"))
            .unwrap();
        assert!(outside.path().join("secret").exists());
    }

    #[test]
    fn paths_that_leave_the_root_are_refused_before_any_call() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        for rel in ["../x", "/etc/passwd", "a/../../x", "", "./a"] {
            assert!(root.open_file(Path::new(rel)).is_err(), "{rel}");
            assert!(root.create_dir_all(Path::new(rel)).is_err(), "{rel}");
        }
    }
}
