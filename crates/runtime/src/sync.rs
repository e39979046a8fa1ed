//! Bulkhead's locks: `std::sync`'s futex locks behind `parking_lot`'s API (`lock()`
//! returns the guard; a poisoned lock is taken anyway), because a contended lock on a
//! `write`, `io` or `flush` thread must never call `sched_yield`. The engine, the
//! object-store layers and the runtime metrics all use these.
//!
//! Why (issue 24, `docs/benchmarks.md`): `parking_lot` spins on a contended lock with
//! `sched_yield` before it sleeps. On a `write` thread that is a hand-over of its CPU:
//! when the only other runnable thread there is an idle-class `query` or `compact`
//! thread, the kernel runs that one, and the writer waits up to a scheduler slice
//! (measured up to 8 ms inside one `sched_yield` in the interference benchmark's
//! phase B, against 3 ms in phase A). The table locks are contended by design: two
//! `write` threads, the flush and every query's snapshot take them. `std`'s locks spin
//! briefly on the CPU and then wait on a futex, so the holder's release wakes the
//! writer directly and no other thread is invited in between.

use std::sync::PoisonError;

pub use std::sync::{MutexGuard, RwLockReadGuard, RwLockWriteGuard};

/// A mutual-exclusion lock that does not yield the CPU while it waits.
#[derive(Debug, Default)]
pub struct Mutex<T: ?Sized>(std::sync::Mutex<T>);

impl<T> Mutex<T> {
    pub const fn new(value: T) -> Self {
        Self(std::sync::Mutex::new(value))
    }
}

impl<T: ?Sized> Mutex<T> {
    /// Wait for the lock. A panic of an earlier holder does not poison it: the state
    /// under a lock is kept consistent by the code that owns it, as with `parking_lot`.
    pub fn lock(&self) -> MutexGuard<'_, T> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn get_mut(&mut self) -> &mut T {
        self.0.get_mut().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A reader-writer lock that does not yield the CPU while it waits.
#[derive(Debug, Default)]
pub struct RwLock<T: ?Sized>(std::sync::RwLock<T>);

impl<T> RwLock<T> {
    pub const fn new(value: T) -> Self {
        Self(std::sync::RwLock::new(value))
    }
}

impl<T: ?Sized> RwLock<T> {
    pub fn read(&self) -> RwLockReadGuard<'_, T> {
        self.0.read().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn write(&self) -> RwLockWriteGuard<'_, T> {
        self.0.write().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_whose_holder_panicked_is_still_usable() {
        let lock = std::sync::Arc::new(Mutex::new(1));
        let held = std::sync::Arc::clone(&lock);
        let _ = std::thread::spawn(move || {
            let _guard = held.lock();
            panic!("holder panics");
        })
        .join();
        *lock.lock() += 1;
        assert_eq!(*lock.lock(), 2);
    }

    #[test]
    fn a_rwlock_reads_what_was_written() {
        let rw = RwLock::new(5);
        assert_eq!(*rw.read(), 5);
        *rw.write() = 6;
        assert_eq!(*rw.read(), 6);
    }
}
