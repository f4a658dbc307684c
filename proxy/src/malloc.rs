//! glibc allocator settings for a long-running server: applied once at start, before the
//! runtime's threads exist, plus a thread that hands freed memory back to the kernel.
//!
//! Measured under the bench's warm scenario (docs/benchmarks/notes.md, "Memory"): at the end
//! of the warm-up (620 fills, then hits) glibc held 78 MB for 7.4 MB in use
//! (`malloc_stats`), spread over 16 arenas, and peak RSS was 87-132 MB:
//!
//! - glibc gives a thread that meets contention an arena of its own, up to 8 per core, and the
//!   blocking pool's threads (a cache hit opens its file there, a fill writes there) each land
//!   in one; memory freed into an arena stays with it. Two arenas ([`ARENA_MAX`]) keep the two
//!   tokio workers from contending, and the rest share.
//! - glibc returns memory to the kernel only from the top of a heap; the free chunks between
//!   live ones (fills interleave buffers of every size with long-lived index entries) stay
//!   resident. With two arenas, 63 MB were held for 8 MB in use and `malloc_trim` brought RSS
//!   from 71 to 19 MB. So [`trim_periodically`] runs it every [`TRIM_INTERVAL`] while requests
//!   come ([`note_activity`]), once more after the last, and then sleeps until the next: an
//!   idle proxy's thread does not wake.
//! - the mmap threshold is fixed ([`MMAP_THRESHOLD`]) because glibc otherwise raises it to the
//!   largest block freed so far: after the first 1-2 MiB fill buffer (the cache writer's batch)
//!   every later one is carved from an arena instead of being mapped and unmapped whole.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::Thread;
use std::time::Duration;

/// Arenas glibc may create (`M_ARENA_MAX`): see the module doc.
pub const ARENA_MAX: i32 = 2;
/// Blocks at least this large are mapped on their own and unmapped on free
/// (`M_MMAP_THRESHOLD`: glibc's default start value, kept fixed).
pub const MMAP_THRESHOLD: i32 = 128 << 10;
/// How often free memory inside the heaps is given back. A trim walks the free lists and
/// advises the kernel of their whole free pages; a page given back and used again costs a
/// fault. Every 250 ms measured no lower peak than every second.
pub const TRIM_INTERVAL: Duration = Duration::from_secs(1);

/// Requests seen by the trim thread: whether one came since it last looked, and the thread
/// to wake when it sleeps.
struct Activity {
    active: AtomicBool,
    trimmer: OnceLock<Thread>,
}

static ACTIVITY: Activity = Activity::new();

/// Called for each request: wakes the trim thread if it sleeps. One relaxed load when it is
/// already awake (the common case under load).
pub fn note_activity() {
    ACTIVITY.note();
}

impl Activity {
    const fn new() -> Activity {
        Activity {
            active: AtomicBool::new(false),
            trimmer: OnceLock::new(),
        }
    }

    fn note(&self) {
        if !self.active.load(Ordering::Relaxed)
            && !self.active.swap(true, Ordering::AcqRel)
            && let Some(t) = self.trimmer.get()
        {
            t.unpark();
        }
    }

    /// The trim thread's loop: park until [`Activity::note`], then `trim` every `interval`
    /// for as long as activity is seen in each; the trim after the last active interval comes
    /// before parking, so memory freed by the last requests is given back too.
    fn trim_while_active(&self, interval: Duration, mut trim: impl FnMut()) -> ! {
        loop {
            while !self.active.load(Ordering::Acquire) {
                // Spurious wake-ups only loop back here.
                std::thread::park();
            }
            loop {
                std::thread::sleep(interval);
                trim();
                if !self.active.swap(false, Ordering::AcqRel) {
                    break;
                }
            }
        }
    }
}

/// Applies the settings and starts the trimming thread; a no-op where the C library is not
/// glibc. Call before any other thread starts.
pub fn tune() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only sets allocator parameters; no other thread exists yet, so no
        // allocation runs concurrently with the change.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, ARENA_MAX);
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        }
        trim_periodically(TRIM_INTERVAL);
    }
}

/// Starts a thread that calls `malloc_trim(0)` every `interval` while there is activity, and
/// parks when an interval passed without any (after a last trim).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim_periodically(interval: Duration) {
    let spawned = std::thread::Builder::new()
        .name("malloc-trim".into())
        // It only sleeps and calls into libc.
        .stack_size(64 << 10)
        .spawn(move || {
            ACTIVITY.trim_while_active(interval, || {
                // SAFETY: malloc_trim takes the allocator's own locks; it is safe to call
                // from any thread at any time.
                unsafe {
                    libc::malloc_trim(0);
                }
            })
        });
    match spawned {
        Ok(handle) => {
            let _ = ACTIVITY.trimmer.set(handle.thread().clone());
        }
        Err(e) => eprintln!(
            "modfleet-proxy: cannot start the malloc-trim thread ({e}); freed memory stays resident"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;

    /// Trims follow activity and stop after it: an idle thread does not trim (or wake).
    #[test]
    fn trims_only_while_requests_come() {
        // Its own activity, not the process's (other tests' requests note that).
        static A: Activity = Activity::new();
        let trims = Arc::new(AtomicUsize::new(0));
        let counted = trims.clone();
        let t = std::thread::spawn(move || {
            A.trim_while_active(Duration::from_millis(5), move || {
                counted.fetch_add(1, Ordering::SeqCst);
            })
        });
        A.trimmer.set(t.thread().clone()).unwrap();
        let wait_for = |n: usize| {
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while trims.load(Ordering::SeqCst) < n {
                assert!(
                    std::time::Instant::now() < deadline,
                    "no trim after activity"
                );
                std::thread::yield_now();
            }
        };
        // Idle: parked, no trims (the thread parks before its first interval).
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(trims.load(Ordering::SeqCst), 0);
        // A request: a trim follows, then at most one more before the thread parks again.
        A.note();
        wait_for(1);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while A.active.load(Ordering::SeqCst) {
            assert!(std::time::Instant::now() < deadline);
            std::thread::yield_now();
        }
        std::thread::sleep(Duration::from_millis(50));
        let settled = trims.load(Ordering::SeqCst);
        assert!(settled <= 2, "{settled} trims for one request");
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(trims.load(Ordering::SeqCst), settled, "trims while idle");
        // Activity again wakes it.
        A.note();
        wait_for(settled + 1);
    }
}
