//! Filling a fresh store from a stream of records (a snapshot being decompressed, a
//! store being compacted): the reader hands batches to writer threads and keeps
//! reading while they insert. Inserting is most of a restore's time, and the store
//! takes writes to one tree from several threads at once.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};

use super::BackupError;
use super::format::Progress;
use super::store::SnapshotSink;

/// Records handed to a writer at once.
pub const BATCH: usize = 10_000;
/// Records of one tree, keys and values as the store encodes them.
pub type Batch = Vec<(Vec<u8>, Vec<u8>)>;

/// The reader's side: start trees, hand over their records.
pub struct Feed<'a> {
    sink: &'a dyn SnapshotSink,
    tree: Option<Arc<str>>,
    tx: SyncSender<(Arc<str>, Batch)>,
    failed: &'a AtomicBool,
}

impl Feed<'_> {
    /// Start `name` (created empty); the records that follow belong to it.
    pub fn tree(&mut self, name: &str) -> Result<(), BackupError> {
        self.check()?;
        self.sink.start(name)?;
        self.tree = Some(Arc::from(name));
        Ok(())
    }

    /// Hand `batch` to a free writer (waits while every writer is busy).
    pub fn records(&mut self, batch: Batch) -> Result<(), BackupError> {
        if batch.is_empty() {
            return Ok(());
        }
        self.check()?;
        let Some(tree) = &self.tree else {
            return Err(BackupError::Corrupt("records before any tree".into()));
        };
        self.tx.send((tree.clone(), batch)).map_err(|_| stopped())
    }

    fn check(&self) -> Result<(), BackupError> {
        if self.failed.load(Ordering::Relaxed) {
            Err(stopped())
        } else {
            Ok(())
        }
    }
}

/// What the reader sees once a writer failed (the writer's own error is reported).
fn stopped() -> BackupError {
    BackupError::Io("the store being filled stopped".into())
}

/// How many writer threads: the cores, at least two (one inserts while the other
/// waits on the store's locks), at most four.
fn writers() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 4))
}

/// Run `read` on this thread with writer threads filling `sink` from its feed.
/// `total` (0: unknown) is passed to `progress` with the records written so far.
/// A writer's error wins over the reader's (which is then only "stopped").
pub fn fill<R>(
    sink: &dyn SnapshotSink,
    total: u64,
    progress: Progress<'_>,
    read: impl FnOnce(&mut Feed<'_>) -> Result<R, BackupError>,
) -> Result<R, BackupError> {
    let failed = AtomicBool::new(false);
    let error: Mutex<Option<BackupError>> = Mutex::new(None);
    let done = AtomicU64::new(0);
    let (tx, rx) = sync_channel::<(Arc<str>, Batch)>(writers() * 2);
    let rx = Mutex::new(rx);
    let result = std::thread::scope(|scope| {
        for _ in 0..writers() {
            scope.spawn(|| write(sink, &rx, &failed, &error, &done, total, progress));
        }
        let mut feed = Feed {
            sink,
            tree: None,
            tx,
            failed: &failed,
        };
        // Dropping the feed (its sender) lets the writers finish what is queued.
        read(&mut feed)
    });
    if let Some(e) = error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    result
}

fn write(
    sink: &dyn SnapshotSink,
    rx: &Mutex<Receiver<(Arc<str>, Batch)>>,
    failed: &AtomicBool,
    error: &Mutex<Option<BackupError>>,
    done: &AtomicU64,
    total: u64,
    progress: Progress<'_>,
) {
    loop {
        // The lock is held only to take the next batch.
        let next = rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
        let Ok((tree, batch)) = next else { return };
        if failed.load(Ordering::Relaxed) {
            continue;
        }
        match sink.put(&tree, &batch) {
            Ok(()) => {
                let n = done.fetch_add(batch.len() as u64, Ordering::Relaxed) + batch.len() as u64;
                progress(n, total);
            }
            Err(e) => {
                failed.store(true, Ordering::Relaxed);
                let mut slot = error.lock().unwrap_or_else(|p| p.into_inner());
                slot.get_or_insert(e);
            }
        }
    }
}
