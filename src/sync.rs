//! The one way this crate takes a `std::sync::Mutex`.
//!
//! Every mutex here guards state that stays consistent if a holder panics
//! (counters, queues replaced whole, a current-pipeline slot), and the agent
//! must keep running its outputs' failsafe paths after a bug elsewhere: a
//! poisoned lock is entered, not turned into a second panic.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// `lock()` that enters a poisoned mutex instead of panicking.
pub trait LockIgnoringPoison<T: ?Sized> {
    fn lock_ignoring_poison(&self) -> MutexGuard<'_, T>;
}

impl<T: ?Sized> LockIgnoringPoison<T> for Mutex<T> {
    fn lock_ignoring_poison(&self) -> MutexGuard<'_, T> {
        self.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_poisoned_lock_is_entered_with_its_data() {
        let m = std::sync::Arc::new(Mutex::new(41));
        let m2 = m.clone();
        let _ = std::thread::spawn(move || {
            let _g = m2.lock().unwrap();
            panic!("poison it");
        })
        .join();
        assert!(m.is_poisoned());
        *m.lock_ignoring_poison() += 1;
        assert_eq!(*m.lock_ignoring_poison(), 42);
    }
}
