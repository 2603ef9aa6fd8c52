//! The sled backend of the backup domain's storage traits: a point-in-time view across
//! trees (the store's capture, see `store::capture`) and restoring into a fresh store.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use crate::backup::BackupError;
use crate::backup::store::{Each, SnapshotSink, SnapshotSource, SnapshotTarget, SnapshotView};
use crate::store::capture::Capture;
use crate::store::{Store, StoreError, meta};

fn store_err(e: sled::Error) -> BackupError {
    StoreError::from(e).into()
}

impl From<StoreError> for BackupError {
    fn from(e: StoreError) -> Self {
        if e.is_full() {
            BackupError::Full(e.to_string())
        } else {
            BackupError::Store(e.to_string())
        }
    }
}

/// Every tree, as it was when the capture began.
struct View<'a> {
    db: &'a sled::Db,
    trees: Vec<String>,
    capture: &'a Capture,
}

impl SnapshotView for View<'_> {
    fn trees(&self) -> Vec<String> {
        self.trees.clone()
    }

    fn records(&self, tree: &str, each: &mut Each<'_>) -> Result<u64, BackupError> {
        let t = self.db.open_tree(tree).map_err(store_err)?;
        let mut failed: Option<BackupError> = None;
        let n = self
            .capture
            .read(&t, &mut |k, v| {
                each(k, v).map_err(|e| {
                    let msg = e.to_string();
                    failed = Some(e);
                    msg
                })
            })
            .map_err(|msg| failed.take().unwrap_or(BackupError::Store(msg)))?;
        Ok(n)
    }
}

/// Tree names, without the store's own (`__sled__default`, `__journal`): a snapshot
/// reads every change whole, so a restored store starts with an empty journal.
fn tree_names(db: &sled::Db) -> Vec<String> {
    let mut v: Vec<String> = db
        .tree_names()
        .into_iter()
        .filter(|n| !n.starts_with(b"__"))
        .map(|n| String::from_utf8_lossy(&n).to_string())
        .collect();
    v.sort();
    v
}

impl SnapshotSource for Store {
    fn read_snapshot(
        &self,
        read: &mut dyn FnMut(&dyn SnapshotView) -> Result<(), BackupError>,
    ) -> Result<(), BackupError> {
        let running = self.gate.begin();
        // Listed after the capture began: a tree created later holds only records
        // the capture marks as absent, so it comes out empty.
        let view = View {
            db: &self.db,
            trees: tree_names(&self.db),
            capture: &running.capture,
        };
        read(&view)
    }

    fn schema_version(&self) -> Result<u32, BackupError> {
        Ok(meta::schema_version(self)?)
    }

    fn backend(&self) -> &'static str {
        "sled"
    }
}

/// A fresh store being filled from a snapshot.
struct Sink {
    store: Store,
    /// Every started tree with the records put into it so far. Counted as they are
    /// inserted (a key put twice counts once), so `finish` does not walk the restored
    /// store a second time to count it.
    /// Only counters: holding sled's tree handles here kept the store's files locked
    /// for a moment after the sink was dropped, and a restore reopens them at once.
    started: RwLock<HashMap<String, Arc<AtomicU64>>>,
}

impl SnapshotSink for Sink {
    fn start(&self, tree: &str) -> Result<(), BackupError> {
        let t = self.store.db.open_tree(tree).map_err(store_err)?;
        t.clear().map_err(store_err)?;
        let mut started = self.started.write().unwrap_or_else(|p| p.into_inner());
        started.insert(tree.to_string(), Arc::default());
        Ok(())
    }

    fn put(&self, tree: &str, records: &[(Vec<u8>, Vec<u8>)]) -> Result<(), BackupError> {
        if records.is_empty() {
            return Ok(());
        }
        let count = {
            let started = self.started.read().unwrap_or_else(|p| p.into_inner());
            let Some(count) = started.get(tree) else {
                return Err(BackupError::Store(format!(
                    "records for tree {tree}, which was not started"
                )));
            };
            count.clone()
        };
        let t = self.store.db.open_tree(tree).map_err(store_err)?;
        // A fresh store nobody reads yet: plain inserts. A `Batch` would take sled's
        // process-wide write lock, stalling a running server while it verifies a
        // snapshot; `finish` makes everything durable with one checkpoint.
        let mut new = 0u64;
        for (k, v) in records {
            if t.insert(k.as_slice(), v.as_slice())
                .map_err(store_err)?
                .is_none()
            {
                new += 1;
            }
        }
        count.fetch_add(new, Ordering::Relaxed);
        Ok(())
    }

    fn finish(&self) -> Result<Vec<(String, u64)>, BackupError> {
        self.store.checkpoint()?;
        let started = self.started.read().unwrap_or_else(|p| p.into_inner());
        let mut counts: Vec<(String, u64)> = started
            .iter()
            .map(|(name, n)| (name.clone(), n.load(Ordering::Relaxed)))
            .collect();
        // Trees the fresh store made itself and no snapshot record filled (small).
        for name in tree_names(&self.store.db) {
            if !started.contains_key(&name) {
                let n = self.store.db.open_tree(&name).map_err(store_err)?.len();
                counts.push((name, n as u64));
            }
        }
        counts.sort();
        Ok(counts)
    }
}

/// Restores into sled stores.
pub struct SledTarget;

impl SnapshotTarget for SledTarget {
    fn open(&self, home: &Path) -> Result<Box<dyn SnapshotSink>, BackupError> {
        let store = Store::open_bulk(home)?;
        Ok(Box::new(Sink {
            store,
            started: RwLock::default(),
        }))
    }

    fn store_dir(&self, home: &Path) -> PathBuf {
        home.join("data").join("echopilot.sled")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(k: &[u8], v: &[u8]) -> (Vec<u8>, Vec<u8>) {
        (k.to_vec(), v.to_vec())
    }

    #[test]
    fn the_sink_counts_distinct_keys_as_they_are_put_and_the_trees_it_made_itself() {
        let dir = tempfile::tempdir().unwrap();
        let sink = SledTarget.open(dir.path()).unwrap();
        sink.start("a").unwrap();
        sink.put("a", &[rec(b"1", b"x"), rec(b"2", b"x")]).unwrap();
        // From another writer thread, one key again: the tree holds three records.
        std::thread::scope(|s| {
            s.spawn(|| sink.put("a", &[rec(b"2", b"y"), rec(b"3", b"x")]).unwrap());
        });
        sink.start("empty").unwrap();
        assert!(sink.put("never-started", &[rec(b"1", b"x")]).is_err());
        let counts = sink.finish().unwrap();
        let count = |t: &str| counts.iter().find(|(n, _)| n == t).map(|(_, c)| *c);
        assert_eq!(count("a"), Some(3));
        assert_eq!(count("empty"), Some(0));
        // The fresh store's own schema record, which no snapshot record filled.
        assert_eq!(count("meta"), Some(1));
        assert_eq!(count("never-started"), None);
    }
}
