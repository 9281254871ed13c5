//! Test-only fault injection, off (0) in every real environment.
//!
//! With `every = N > 0`, the first attempt at one operation in N (chosen by
//! its key, e.g. an event id) fails. Each chosen key fails once per
//! container, so retries make progress: the tests prove that a failure at
//! that point loses nothing and doubles nothing.

use std::collections::HashSet;
use std::sync::Mutex;

#[derive(Debug, Default)]
pub struct FaultHook {
    every: u32,
    failed_once: Mutex<HashSet<String>>,
}

impl FaultHook {
    /// Reads N from the environment variable `name` (absent or invalid: 0).
    pub fn from_env(name: &str) -> Self {
        Self::every(
            std::env::var(name)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
        )
    }

    pub fn every(every: u32) -> Self {
        Self {
            every,
            failed_once: Mutex::new(HashSet::new()),
        }
    }

    /// Whether the attempt keyed `key` must fail now.
    pub fn should_fail(&self, key: &str) -> bool {
        if self.every == 0 {
            return false;
        }
        let chosen = key
            .bytes()
            .map(u32::from)
            .sum::<u32>()
            .is_multiple_of(self.every);
        chosen
            && self
                .failed_once
                .lock()
                .is_ok_and(|mut failed| failed.insert(key.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_hit_each_chosen_key_once() {
        let hook = FaultHook::every(3);
        let ids: Vec<String> = (0..60).map(|i| format!("event-{i}")).collect();
        let first: Vec<bool> = ids.iter().map(|id| hook.should_fail(id)).collect();
        let chosen = first.iter().filter(|f| **f).count();
        assert!(chosen > 5 && chosen < 40, "about one in three: {chosen}");
        assert!(
            ids.iter().all(|id| !hook.should_fail(id)),
            "a retry succeeds"
        );
        assert!(!FaultHook::every(0).should_fail("event-0"));
    }
}
