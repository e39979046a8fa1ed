//! The global allocator (mimalloc), and when it gives freed memory back to the OS.
//!
//! mimalloc returns ("purges") freed memory a while after it was freed, and does it
//! lazily: whichever thread next frees or allocates a page after the delay makes the
//! system calls, and the next allocations fault the pages in again. With transparent
//! huge pages, a lastpoint query a second after a query that had encoded a 160 MB
//! answer took 7-15 ms instead of 3-4 (`docs/benchmarks.md`, issue 16, session 33);
//! without them (below) it does not. [`configure`] sets the delay from
//! `runtime.memory_purge_delay` (1 s by default, mimalloc's own) and
//! starts a `SCHED_IDLE` thread that purges what is due while the server is idle, so
//! memory goes back on a quiet server in the background rather than on the next
//! request (the watchdog's pings, which allocate on every runtime, can trigger it too).
//! It also turns off transparent huge pages for the process unless
//! `runtime.huge_pages` is set: mimalloc asks the kernel for them, and zeroing a fresh
//! 2 MiB page in the fault that first touches it was a third of the server's CPU under
//! ingest (`docs/benchmarks.md`, "Transparent huge pages").

use std::time::Duration;

/// mimalloc instead of glibc malloc: the write path allocates per tag and field, and
/// glibc's free/consolidate was ~20 % of the write thread's profile in bench ingest.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc's `mi_option_t` (`include/mimalloc.h`, the same
/// in v2 and v3; the Rust bindings name the options around it but not this one).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// How often the purging thread looks for memory due to go back, at most.
const MAX_PURGE_INTERVAL: Duration = Duration::from_secs(1);

/// `mi_option_allow_thp`: whether mimalloc asks for transparent huge pages (v3 only).
const MI_OPTION_ALLOW_THP: libmimalloc_sys::mi_option_t = 43;

/// Set mimalloc's purge delay to `delay`, turn transparent huge pages off unless
/// `huge_pages`, and start the thread that purges in the background. Call once, at
/// startup.
pub(crate) fn configure(delay: Duration, huge_pages: bool) -> std::io::Result<()> {
    if !huge_pages {
        disable_huge_pages()?;
    }
    let ms = delay.as_millis().min(i32::MAX as u128) as std::ffi::c_long;
    // SAFETY: sets one of mimalloc's options, which it reads on every purge decision.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, ms) };
    if delay.is_zero() {
        return Ok(()); // purged as soon as freed: nothing is ever due later
    }
    let every = (delay / 4).clamp(Duration::from_millis(10), MAX_PURGE_INTERVAL);
    std::thread::Builder::new()
        .name("bh-purge".into())
        .spawn(move || {
            bulkhead_runtime::set_current_thread_sched_idle();
            loop {
                std::thread::sleep(every);
                // SAFETY: mimalloc's own collection: frees this thread's empty pages and
                // purges memory whose delay has passed.
                unsafe { libmimalloc_sys::mi_collect(false) };
            }
        })?;
    Ok(())
}

/// No transparent huge pages for this process from now on, including in memory that
/// mimalloc reserved (and asked huge pages for) before `main`: the kernel's per-process
/// switch covers every later fault in every mapping, and mimalloc stops asking. Huge
/// pages already faulted in (a few MiB of startup) stay as they are.
fn disable_huge_pages() -> std::io::Result<()> {
    // SAFETY: sets one of mimalloc's options, read when it maps memory.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_ALLOW_THP, 0) };
    #[cfg(target_os = "linux")]
    {
        // SAFETY: a process-wide flag; no pointers are passed.
        if unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_option_is_the_purge_delay() {
        // Unset, option 15 holds mimalloc v3's default purge delay, 1000 ms (v2: 10),
        // which no neighbouring option has: the index names the right option.
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            // SAFETY: reads one of mimalloc's options.
            let default = unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) };
            assert_eq!(default, 1000);
        }
    }

    #[test]
    fn the_option_is_allow_thp() {
        // Unset, option 43 is 1 (allowed) on Linux; its neighbours hold 16 (pages
        // reclaimed across threads) and 0 (minimal purge size).
        if std::env::var_os("MIMALLOC_ALLOW_THP").is_none() {
            // SAFETY: reads one of mimalloc's options.
            let default = unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_ALLOW_THP) };
            assert_eq!(default, 1);
        }
    }
}
