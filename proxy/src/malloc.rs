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
//!   from 71 to 19 MB. So [`trim_periodically`] runs it every [`TRIM_INTERVAL`].
//! - the mmap threshold is fixed ([`MMAP_THRESHOLD`]) because glibc otherwise raises it to the
//!   largest block freed so far: after the first 1-2 MiB fill buffer (the cache writer's batch)
//!   every later one is carved from an arena instead of being mapped and unmapped whole.

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

/// Starts a thread that calls `malloc_trim(0)` every `interval` for the life of the process.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim_periodically(interval: Duration) {
    let spawned = std::thread::Builder::new()
        .name("malloc-trim".into())
        // It only sleeps and calls into libc.
        .stack_size(64 << 10)
        .spawn(move || {
            loop {
                std::thread::sleep(interval);
                // SAFETY: malloc_trim takes the allocator's own locks; it is safe to call from
                // any thread at any time.
                unsafe {
                    libc::malloc_trim(0);
                }
            }
        });
    if let Err(e) = spawned {
        eprintln!(
            "modfleet-proxy: cannot start the malloc-trim thread ({e}); freed memory stays resident"
        );
    }
}
