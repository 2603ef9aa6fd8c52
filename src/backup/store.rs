//! What the backup domain needs from storage, in its own words. The sled backend is in
//! `store::sled_impl::snapshot`; a PostgreSQL one would read inside one
//! `REPEATABLE READ` transaction and write inside one transaction per table.

use std::path::Path;

use super::BackupError;

/// Calls `each(key, value)` for every record of one tree; a returned error stops it.
pub type Each<'a> = dyn FnMut(&[u8], &[u8]) -> Result<(), BackupError> + 'a;

/// Every tree of the store, as it was at one instant.
pub trait SnapshotView {
    /// The trees, in a stable order.
    fn trees(&self) -> Vec<String>;
    /// Feed the records of `tree` to `each` (keys and values as the store encodes
    /// them: every value starts with its record's format-version byte). Returns how
    /// many were fed.
    fn records(&self, tree: &str, each: &mut Each<'_>) -> Result<u64, BackupError>;
}

/// A store a snapshot can be taken from.
pub trait SnapshotSource: Send + Sync {
    /// Freeze one instant across every tree (writers keep going) and hand the view to
    /// `read`. A change group (a job and the audit event of its creation) is wholly
    /// before that instant or wholly after it.
    fn read_snapshot(
        &self,
        read: &mut dyn FnMut(&dyn SnapshotView) -> Result<(), BackupError>,
    ) -> Result<(), BackupError>;
    /// The schema version recorded in the store.
    fn schema_version(&self) -> Result<u32, BackupError>;
    /// Which backend this is (`sled`), for the snapshot's header.
    fn backend(&self) -> &'static str;
}

/// A fresh store a snapshot is restored into. Nobody reads it until `finish`, and a
/// snapshot holds each key of a tree once, so writes may land in any order: a restore
/// writes from several threads at once, one tree or several.
pub trait SnapshotSink: Send + Sync {
    /// Create `tree` empty (emptying it if it exists); before any `put` to it.
    fn start(&self, tree: &str) -> Result<(), BackupError>;
    /// Add records to a started tree; callable from several threads at once.
    fn put(&self, tree: &str, records: &[(Vec<u8>, Vec<u8>)]) -> Result<(), BackupError>;
    /// Make everything durable; returns the record count of every tree.
    fn finish(&self) -> Result<Vec<(String, u64)>, BackupError>;
}

/// Opens fresh stores to restore into.
pub trait SnapshotTarget: Send + Sync {
    /// Open (create) a store whose home is `home` (`home/data/...`).
    fn open(&self, home: &Path) -> Result<Box<dyn SnapshotSink>, BackupError>;
    /// Where, under `home`, the store's files live (moved into place by a restore).
    fn store_dir(&self, home: &Path) -> std::path::PathBuf;
}
