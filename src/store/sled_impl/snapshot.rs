//! The sled backend of the backup domain's storage traits: a point-in-time view across
//! trees (the store's capture, see `store::capture`) and restoring into a fresh store.

use std::path::{Path, PathBuf};

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
}

impl SnapshotSink for Sink {
    fn start(&self, tree: &str) -> Result<(), BackupError> {
        let t = self.store.db.open_tree(tree).map_err(store_err)?;
        t.clear().map_err(store_err)
    }

    fn put(&self, tree: &str, records: &[(Vec<u8>, Vec<u8>)]) -> Result<(), BackupError> {
        if records.is_empty() {
            return Ok(());
        }
        let t = self.store.db.open_tree(tree).map_err(store_err)?;
        // A fresh store nobody reads yet: plain inserts. A `Batch` would take sled's
        // process-wide write lock, stalling a running server while it verifies a
        // snapshot; `finish` makes everything durable with one checkpoint.
        for (k, v) in records {
            t.insert(k.as_slice(), v.as_slice()).map_err(store_err)?;
        }
        Ok(())
    }

    fn finish(&self) -> Result<Vec<(String, u64)>, BackupError> {
        self.store.checkpoint()?;
        Ok(self
            .store
            .tree_counts()
            .into_iter()
            .map(|(n, c)| (n, c as u64))
            .collect())
    }
}

/// Restores into sled stores.
pub struct SledTarget;

impl SnapshotTarget for SledTarget {
    fn open(&self, home: &Path) -> Result<Box<dyn SnapshotSink>, BackupError> {
        let store = Store::open_bulk(home)?;
        Ok(Box::new(Sink { store }))
    }

    fn store_dir(&self, home: &Path) -> PathBuf {
        home.join("data").join("echopilot.sled")
    }
}
