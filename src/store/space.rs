//! The free-space reserve: below it the store refuses new changes before they reach
//! sled. sled 0.34 turns a failed write (`ENOSPC`) into an error it keeps for the life
//! of the process, so letting it meet a full disk would stop every write until a
//! restart; refusing at the reserve keeps it healthy, and writes resume by themselves
//! the moment space returns.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use super::StoreError;

/// How long a free-space reading is trusted (statvfs is cheap, but not free per write).
const RECHECK_MS: u64 = 100;

pub(crate) struct Space {
    dir: PathBuf,
    min_free: AtomicU64,
    /// Below the reserve at the last reading.
    full: AtomicBool,
    /// Free bytes at the last reading.
    free: AtomicU64,
    /// Milliseconds since `born` of the last reading, plus one (0: never).
    read_at: AtomicU64,
    born: Instant,
}

impl Space {
    pub(crate) fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            // No reserve until the server sets one (`STORE_MIN_FREE_BYTES`): opening the
            // store and the CLI's own work are not refused.
            min_free: AtomicU64::new(0),
            full: AtomicBool::new(false),
            free: AtomicU64::new(u64::MAX),
            read_at: AtomicU64::new(0),
            born: Instant::now(),
        }
    }

    pub(crate) fn set_min_free(&self, bytes: u64) {
        self.min_free.store(bytes, Ordering::Relaxed);
        self.read_at.store(0, Ordering::Relaxed);
    }

    /// Refuse a change while the disk is below the reserve.
    pub(crate) fn check(&self) -> Result<(), StoreError> {
        self.refresh();
        if self.full.load(Ordering::Relaxed) {
            return Err(self.full_error());
        }
        Ok(())
    }

    /// Is the disk below the reserve (re-read when the last reading is old)?
    pub(crate) fn is_full(&self) -> bool {
        self.refresh();
        self.full.load(Ordering::Relaxed)
    }

    pub(crate) fn full_error(&self) -> StoreError {
        StoreError::Full {
            free: self.free.load(Ordering::Relaxed),
            reserve: self.min_free.load(Ordering::Relaxed),
        }
    }

    fn refresh(&self) {
        let now = self.born.elapsed().as_millis() as u64 + 1;
        let at = self.read_at.load(Ordering::Relaxed);
        if at != 0 && now.saturating_sub(at) < RECHECK_MS {
            return;
        }
        self.read_at.store(now, Ordering::Relaxed);
        // A disk we cannot read the size of is not refused on that ground: the write
        // itself will say what is wrong.
        let Ok(free) = fs4::available_space(&self.dir) else {
            return;
        };
        self.free.store(free, Ordering::Relaxed);
        let full = free < self.min_free.load(Ordering::Relaxed);
        if self.full.swap(full, Ordering::Relaxed) != full {
            if full {
                tracing::error!(
                    free_bytes = free,
                    "storage full: the data disk is below the free-space reserve; refusing changes until space is freed"
                );
            } else {
                tracing::warn!(
                    free_bytes = free,
                    "storage: space is back; accepting changes again"
                );
            }
        }
    }
}
