//! The store: one sled database at `<home>/data/echopilot.sled`, one tree per domain.
//!
//! No sled type leaves this module: domains use [`Table`] (typed records through the
//! [`codec`]) and [`Store::sync`] (group commit), so a second backend (`DATABASE_URL`)
//! can be added as a new module without touching domain code.

mod capture;
pub mod codec;
mod durable;
pub mod meta;
pub(crate) mod sled_impl;
mod table;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use codec::{CodecError, Record};
pub use sled_impl::SledTarget;
pub use table::{Cas, Table};

use durable::GroupCommit;

/// Bump when the meaning of stored data changes in a way a record version cannot say
/// (a tree renamed, a key layout changed). Older stores are migrated in `meta::open`.
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "another echopilot is already running on this home (lock {path} is held); stop it \
         first or use another --home"
    )]
    AlreadyRunning { path: PathBuf },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("store error: {0}")]
    Sled(#[from] sled::Error),
    #[error(transparent)]
    Codec(#[from] CodecError),
    #[error("durable sync failed: {0}")]
    Sync(String),
    #[error(
        "the store has schema version {found}, newer than this binary's {supported}: \
         run the newer echopilot or restore a backup"
    )]
    SchemaTooNew { found: u32, supported: u32 },
    #[error("store probe failed: {0}")]
    Probe(String),
}

impl StoreError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        StoreError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// The home's lock, held by the process that owns the store (see [`Store::lock_home`]).
#[derive(Debug)]
pub struct HomeLock(File);

/// A point in the group commit's sequence (see [`Store::sync_ticket`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncTicket(u64);

/// A change that is written but not yet known to be durable. Store operations that
/// change state hand one back; the caller awaits [`Commit::durable`] once before it
/// answers. Several changes (a job and its audit event) awaited together share one group
/// commit. A backend that commits synchronously (a SQL transaction) hands back
/// [`Commit::done`].
#[must_use = "a change is durable only once `durable()` has returned"]
#[derive(Clone)]
pub struct Commit(CommitInner);

#[derive(Clone)]
enum CommitInner {
    Done,
    Pending(GroupCommit, u64),
}

impl Commit {
    /// A commit that is durable already.
    pub fn done() -> Commit {
        Commit(CommitInner::Done)
    }

    /// Return once the change is on stable storage.
    pub async fn durable(self) -> Result<(), StoreError> {
        match self.0 {
            CommitInner::Done => Ok(()),
            CommitInner::Pending(gc, ticket) => gc.wait(ticket).await,
        }
    }
}

impl std::fmt::Debug for Commit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            CommitInner::Done => f.write_str("Commit(done)"),
            CommitInner::Pending(_, t) => write!(f, "Commit(pending {t})"),
        }
    }
}

/// A handle to the store; cloning is cheap (sled handles and an `Arc`).
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    path: PathBuf,
    commit: GroupCommit,
    /// Change groups and snapshot captures (point-in-time reads across trees).
    gate: Arc<capture::Gate>,
    /// Held for the life of the process: a second server on the same home fails to take it.
    _lock: Arc<File>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

impl Store {
    /// Open (or create) the store under `<home>/data`, taking the home's lock first.
    pub fn open(home: &Path) -> Result<Store, StoreError> {
        Self::open_tuned(home, |c| c)
    }

    /// As [`Store::open`] for a store being filled in bulk (a restore, a compaction):
    /// a big cache, sled's high-throughput mode and no background flush until the
    /// filler syncs. The files are the same; a later [`Store::open`] reads them.
    pub(crate) fn open_bulk(home: &Path) -> Result<Store, StoreError> {
        Self::open_tuned(home, |c| {
            c.cache_capacity(512 * 1024 * 1024)
                .mode(sled::Mode::HighThroughput)
                .flush_every_ms(None)
        })
    }

    fn open_tuned(
        home: &Path,
        tune: impl FnOnce(sled::Config) -> sled::Config,
    ) -> Result<Store, StoreError> {
        let lock = Self::lock_home(home)?;
        let path = home.join("data").join("echopilot.sled");
        let db = tune(
            sled::Config::new()
                .path(&path)
                .cache_capacity(64 * 1024 * 1024),
        )
        .open()?;
        let commit = GroupCommit::new(db.clone(), &path)?;
        let store = Store {
            db,
            path,
            commit,
            gate: Arc::default(),
            _lock: Arc::new(lock.0),
        };
        meta::open(&store)?;
        Ok(store)
    }

    /// Take the home's lock without opening the store: proves no server runs there
    /// (restore and compaction hold it while they swap the store's folder).
    pub fn lock_home(home: &Path) -> Result<HomeLock, StoreError> {
        let data = home.join("data");
        std::fs::create_dir_all(&data).map_err(|e| StoreError::io(&data, e))?;
        let lock_path = data.join("echopilot.lock");
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| StoreError::io(&lock_path, e))?;
        match lock.try_lock() {
            Ok(()) => Ok(HomeLock(lock)),
            Err(std::fs::TryLockError::WouldBlock) => {
                Err(StoreError::AlreadyRunning { path: lock_path })
            }
            Err(std::fs::TryLockError::Error(e)) => Err(StoreError::io(&lock_path, e)),
        }
    }

    /// A typed view of the tree `name`.
    pub fn table<T: Record>(&self, name: &str) -> Result<Table<T>, StoreError> {
        Ok(Table::new(self.db.open_tree(name)?, self.gate.clone()))
    }

    /// Run `f` as one change group: a snapshot holds all of its writes or none. A
    /// request that changes several trees (a record and its audit event) runs in one;
    /// nested groups join the outer one.
    pub async fn grouped<F: std::future::Future>(&self, f: F) -> F::Output {
        self.gate.grouped(f).await
    }

    /// A [`Commit`] covering every write made before this call (no sync starts until
    /// someone awaits it). For the store's own modules: a domain never sees this call,
    /// it gets the token from the operation that changed something.
    pub(crate) fn pending(&self) -> Commit {
        Commit(CommitInner::Pending(
            self.commit.clone(),
            self.commit.ticket(),
        ))
    }

    /// Wait until every write made before this call is on stable storage (group commit).
    pub async fn sync(&self) -> Result<(), StoreError> {
        self.commit.sync().await
    }

    /// Note "every write made so far" without syncing yet. Pass the ticket to
    /// [`Store::sync_until`] after other work that syncs anyway (an audit record): one
    /// sync then covers both, instead of one each.
    pub fn sync_ticket(&self) -> SyncTicket {
        SyncTicket(self.commit.ticket())
    }

    /// Wait until every write made before `ticket` was taken is on stable storage.
    pub async fn sync_until(&self, ticket: SyncTicket) -> Result<(), StoreError> {
        self.commit.wait(ticket.0).await
    }

    /// Flush and fdatasync now, blocking (start-up, shutdown, CLI).
    pub fn sync_blocking(&self) -> Result<(), StoreError> {
        self.commit.sync_blocking()
    }

    /// How many real syncs have run (group commit shares them between writers).
    pub fn syncs(&self) -> u64 {
        self.commit.syncs()
    }

    /// Where the store lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes the store takes on disk.
    pub fn size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }

    /// Names and record counts of every tree.
    pub fn tree_counts(&self) -> Vec<(String, usize)> {
        let mut out: Vec<(String, usize)> = self
            .db
            .tree_names()
            .into_iter()
            .filter(|n| n.as_ref() != b"__sled__default")
            .filter_map(|n| {
                let name = String::from_utf8_lossy(&n).to_string();
                self.db.open_tree(&n).ok().map(|t| (name, t.len()))
            })
            .collect();
        out.sort();
        out
    }

    /// Write, read back and compare a probe key: proves the store answers.
    pub fn probe(&self) -> Result<(), StoreError> {
        meta::probe(self)
    }
}
