//! The store: one sled database at `<home>/data/echopilot.sled`, one tree per domain.
//!
//! Each domain says what it needs from storage as a trait in its own words, beside its
//! code: [`JobStore`](crate::jobs::JobStore), [`ScheduleStore`](crate::scheduler::store::ScheduleStore),
//! [`AuditStore`](crate::audit::store::AuditStore),
//! [`MinuteStore`](crate::slo::store::MinuteStore) and
//! [`AlertStore`](crate::slo::store::AlertStore). The sled implementations live in
//! `sled_impl/<domain>.rs`, and only there are byte-key layouts, index trees,
//! compare-and-swap loops and tree names. The store's own facts (schema version, boots,
//! the probe key) are in [`meta`]. A PostgreSQL backend (`DATABASE_URL`) is a second
//! set of implementations; no domain changes.
//!
//! **Durability is decided here.** An operation that changes state hands back a
//! [`Commit`]; the caller awaits [`Commit::durable`] once, after whatever else it
//! writes, before it answers (the web layer: change, audit event, then the commit, so
//! both share one group commit). Nobody outside this module syncs; the composition root
//! calls [`Store::checkpoint`] after start-up recovery and at shutdown.
//!
//! How each operation maps, sled now and SQL later:
//!
//! | operation | sled (`sled_impl`) | PostgreSQL |
//! |---|---|---|
//! | `Commit` | a group-commit ticket: flush + fdatasync shared by every writer waiting (`durable.rs`) | [`Commit::done`]: the transaction committed before the call returned |
//! | `JobStore::insert` | record in `jobs`, its index entries and counts as one [`AtomicWrite`] (journal record, then plain writes); unique key by `insert_new` / CAS in `jobs_unique` | `INSERT … ON CONFLICT (unique_key) WHERE unfinished DO NOTHING RETURNING`, else `SELECT` the holder |
//! | `JobStore::update(id, f)` | under the store's write lock: read, `f`, one [`AtomicWrite`] for the record, its index entries and counts | `BEGIN; SELECT … FOR UPDATE; f; UPDATE; COMMIT` |
//! | `JobStore::update_batch(changes)` | as `update` for each entry in order under one hold of the write lock, the changed records in one [`AtomicWrite`] | one transaction of `SELECT … FOR UPDATE` and `UPDATE` per entry |
//! | `JobStore::claim(queues, kinds, n, f)` | under the write lock, walk each (queue, kind) range of `jobs_ready` from its head, take the best while its record is still queued there; the jobs taken go in one [`AtomicWrite`] | `UPDATE jobs SET … WHERE id IN (SELECT id FROM jobs WHERE status='queued' AND queue = ANY($1) … ORDER BY priority DESC, run_at, id LIMIT $n FOR UPDATE SKIP LOCKED) RETURNING *` |
//! | `JobStore::list / ids` | a filter on status, queue or kind: the `jobs_status` ranges of the matching (status, queue, kind), merged in id order; otherwise a range over `jobs` (ids are UUIDv7: time order) | `SELECT … WHERE … AND id < $cursor ORDER BY id DESC LIMIT $n` |
//! | `JobStore::counts` | `jobs_counts`, written with each change and read at open; kept in memory | `SELECT queue, kind, status, count(*) … GROUP BY` (or a counts table updated in the same transaction) |
//! | `JobStore::expired_leases / due / next_run_at` | range over `jobs_running` (by lease end) / over `jobs_sched` (by `run_at`) | `WHERE status='running' AND lease_expires_at <= $now` / `WHERE status='scheduled' AND run_at <= $now` / `min(run_at)`, with indexes on those columns |
//! | `JobStore::prune` | range over `jobs_finished` (by `finished_at`), remove in atomic writes of 256, release unique keys | `DELETE … WHERE finished_at < $t AND status IN (…)` |
//! | `ScheduleStore` | `schedules` tree by name; `update` by CAS | one row per schedule; `SELECT … FOR UPDATE` in `update` |
//! | `AuditStore::append(make)` | under a lock, tail (seq, hash) → `make` → the event (with the previous block's `audit_index` bitmaps when it starts a block of 64) as one [`AtomicWrite`] | `BEGIN; SELECT seq, hash … ORDER BY seq DESC LIMIT 1 FOR UPDATE` (or an advisory lock); `INSERT`; `COMMIT` |
//! | `AuditStore::since_seq / newest_first` | range over `audit` |
//! | `AuditStore::candidates(filter)` | `audit_index` bitmaps per 64 seqs (failures, action, actor, ip) walked together, the newest block from memory; a time bound by binary search on seq | `WHERE` on indexed columns, `ORDER BY seq DESC` | `WHERE seq >= $1 ORDER BY seq` / `WHERE seq < $1 ORDER BY seq DESC` |
//! | `MinuteStore::merge(minute, f)` | under a lock: read the minute, `f`, then the minute and its 5-minute, hour and day sums (`slo_sums`) as one [`AtomicWrite`] | `INSERT … ON CONFLICT (minute) DO UPDATE` and the sums' upserts in one transaction (`f` on the locked row) |
//! | `MinuteStore::sums(slot, from, to)` | range of `slo_sums` by (slot size, start) | `SELECT … FROM slo_sums WHERE slot = $1 AND start BETWEEN $2 AND $3` |
//! | `AlertStore::next_id / put` | counter read at open / insert by id | a sequence / `INSERT … ON CONFLICT (id) DO UPDATE` |
//!
//! Record formats go through [`codec`]: a version byte, then bincode; an older record
//! is migrated by its type's `Record::migrate`, a newer one refused. A change of layout
//! that a record version cannot say (a tree renamed, a key layout changed) bumps
//! [`SCHEMA_VERSION`]; a store with a newer one is refused at open, never half-read.

mod atomic;
mod capture;
pub mod codec;
mod durable;
mod journal;
pub mod meta;
pub(crate) mod sled_impl;
mod space;
mod table;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use atomic::AtomicWrite;
pub use codec::{CodecError, Record};
pub use sled_impl::SledTarget;
pub use table::{Cas, Table};

use durable::GroupCommit;

/// Bump when the meaning of stored data changes in a way a record version cannot say
/// (a tree renamed, a key layout changed). Older stores are migrated in `meta::open`.
/// 2: the job and audit indexes are written with their records (new layouts of
/// `jobs_status` and `jobs_running`; `jobs_finished`, `jobs_counts`, `audit_index`),
/// which an older binary would leave stale.
pub const SCHEMA_VERSION: u32 = 2;

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
    #[error(
        "storage full: {free} bytes free on the data disk, below the {reserve}-byte reserve \
         (STORE_MIN_FREE_BYTES); changes resume by themselves once space is freed"
    )]
    Full { free: u64, reserve: u64 },
}

impl StoreError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        StoreError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// The disk is out of space (our reserve, or the system's `ENOSPC`).
    pub fn is_full(&self) -> bool {
        let enospc = |e: &std::io::Error| {
            e.kind() == std::io::ErrorKind::StorageFull || e.raw_os_error() == Some(28)
        };
        match self {
            StoreError::Full { .. } => true,
            StoreError::Io { source, .. } => enospc(source),
            StoreError::Sled(sled::Error::Io(e)) => enospc(e),
            _ => false,
        }
    }
}

/// The home's lock, held by the process that owns the store (see [`Store::lock_home`]).
#[derive(Debug)]
pub struct HomeLock(File);

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

    /// One token for two changes: durable when both are. In the group commit a later
    /// ticket covers every earlier one, so this keeps the later.
    pub fn and(self, other: Commit) -> Commit {
        match (self.0, other.0) {
            (CommitInner::Done, o) | (o, CommitInner::Done) => Commit(o),
            (CommitInner::Pending(gc, a), CommitInner::Pending(_, b)) => {
                Commit(CommitInner::Pending(gc, a.max(b)))
            }
        }
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
    /// The free-space reserve every change is checked against.
    space: Arc<space::Space>,
    path: PathBuf,
    commit: GroupCommit,
    /// Change groups and snapshot captures (point-in-time reads across trees).
    gate: Arc<capture::Gate>,
    /// What makes a change of several keys atomic across a crash.
    journal: Arc<journal::Journal>,
    /// Held for the life of the process: a second server on the same home fails to take it.
    _lock: Arc<File>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

/// The lock a running server holds on its home: `<home>/data/echopilot.lock`.
pub fn lock_path(home: &Path) -> PathBuf {
    home.join("data").join("echopilot.lock")
}

/// Is the home's lock held by a process (a running server, or a CLI command holding
/// the store)? A missing lock file means no.
pub fn lock_held(home: &Path) -> bool {
    let Ok(f) = File::options().write(true).open(lock_path(home)) else {
        return false;
    };
    // Taking it for a moment says it was free; dropping `f` releases it again.
    matches!(f.try_lock(), Err(std::fs::TryLockError::WouldBlock))
}

/// Open sled's files. We hold the home's lock, so a busy sled lock is this process's
/// previous handle still closing (sled's I/O threads finish its last writes after the
/// handle is gone): wait for it, briefly.
fn open_sled(config: &sled::Config) -> Result<sled::Db, StoreError> {
    let start = std::time::Instant::now();
    loop {
        match config.open() {
            // sled says so only in its message (an `Other` error).
            Err(sled::Error::Io(e))
                if e.to_string().starts_with("could not acquire lock")
                    && start.elapsed() < std::time::Duration::from_secs(5) =>
            {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            r => return Ok(r?),
        }
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
            // Room for a whole 10⁶-event store: evicting pages mid-restore means
            // writing and reading them back.
            c.cache_capacity(1024 * 1024 * 1024)
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
        let config = tune(
            // 32 MiB: at a million jobs and a million audit events the list and audit
            // routes answered as fast as with 64 (p95 under 6 ms), and the server took
            // 166 MiB instead of 195.
            sled::Config::new()
                .path(&path)
                .cache_capacity(32 * 1024 * 1024),
        );
        let db = open_sled(&config)?;
        let (journal, replayed) = journal::Journal::open(&db)?;
        if replayed > 0 {
            tracing::info!(
                replayed,
                "store: changes cut short by a crash applied again from the journal"
            );
        }
        let commit = GroupCommit::new(db.clone(), &path)?;
        let store = Store {
            db,
            path,
            commit,
            gate: Arc::default(),
            journal: Arc::new(journal),
            space: Arc::new(space::Space::new(home.join("data"))),
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
        let lock_path = lock_path(home);
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

    /// Refuse changes while the data disk has less than `bytes` free
    /// (`STORE_MIN_FREE_BYTES`).
    pub fn set_min_free_bytes(&self, bytes: u64) {
        self.space.set_min_free(bytes);
    }

    /// Is the data disk below the free-space reserve (changes refused)? The error says
    /// how much is free, for an operator.
    pub fn full(&self) -> Option<StoreError> {
        self.space.is_full().then(|| self.space.full_error())
    }

    /// A typed view of the tree `name`.
    pub fn table<T: Record>(&self, name: &str) -> Result<Table<T>, StoreError> {
        Ok(Table::new(
            self.db.open_tree(name)?,
            self.gate.clone(),
            self.space.clone(),
            self.journal.clone(),
        ))
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

    /// Make every write so far durable now, blocking: the composition root calls it
    /// after start-up recovery and at shutdown; CLI commands before they exit.
    pub fn checkpoint(&self) -> Result<(), StoreError> {
        // The next open then has nothing to apply again.
        self.journal.settle()?;
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
            .filter(|n| !n.starts_with(b"__"))
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
