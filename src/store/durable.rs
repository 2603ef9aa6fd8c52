//! Group commit: the one path by which a write becomes durable.
//!
//! sled 0.34's `flush()` ends in `sync_file_range`, which survives a process crash but
//! not a power cut (sled issues #1351 and #1452). So after flushing we also `fdatasync`
//! the store's data file. Syncs are shared: every caller that asks while a sync is in
//! flight is served by the next one, so N concurrent writers cost about two syncs, not N.
//!
//! One sync thread per store runs the turns: a waiter queues its ticket and sleeps; the
//! thread, woken only when it was idle, flushes and syncs, then wakes exactly the
//! waiters that turn covered and, if more queued meanwhile, starts the next turn at
//! once. No request hops to the blocking pool, and nobody is woken for a turn that did
//! not cover it.
//!
//! Only sled's `db` file is synced per turn: `conf` is written once, when the store is
//! created, and never again, so it (and the folder holding both names) is synced once
//! at open.

use std::fs::File;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};

use tokio::sync::oneshot;

use super::StoreError;

/// Why a turn failed, handed to every waiter it covered.
#[derive(Debug, Clone)]
enum Failure {
    Full,
    Sync(String),
}

impl From<Failure> for StoreError {
    fn from(f: Failure) -> StoreError {
        match f {
            Failure::Full => StoreError::Full {
                free: 0,
                reserve: 0,
            },
            Failure::Sync(m) => StoreError::Sync(m),
        }
    }
}

type Reply = oneshot::Sender<Result<(), Failure>>;

#[derive(Default)]
struct State {
    /// Tickets handed out: each `ticket()` call takes the next one.
    requested: u64,
    /// Every ticket up to this one is durable.
    completed: u64,
    /// How many real syncs ran (for benchmarks: syncs per write).
    syncs: u64,
    /// Callers waiting for their ticket.
    waiters: Vec<(u64, Reply)>,
    /// The sync thread sleeps until told there is work.
    idle: bool,
    /// Every handle to the store is gone: the thread ends.
    closed: bool,
}

/// What the sync thread and the handles share.
#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    work: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock leaves only counters behind: keep going.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The store's files; the sync thread holds it weakly, so dropping the last handle
/// closes sled (a restore or compaction reopens the same folder).
struct Inner {
    db: sled::Db,
    data: File,
    shared: Arc<Shared>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.work.notify_all();
    }
}

/// Shared group-commit state; cheap to clone.
#[derive(Clone)]
pub(crate) struct GroupCommit(Arc<Inner>);

impl GroupCommit {
    pub(crate) fn new(db: sled::Db, dir: &Path) -> Result<Self, StoreError> {
        // sled 0.34 keeps its log and pages in `db` and its config in `conf`; `conf` was
        // written (without a sync) when the store was created, so make it and both names
        // durable now, once.
        let open = |name: &str| {
            let p = dir.join(name);
            File::open(&p).map_err(|e| StoreError::io(&p, e))
        };
        let data = open("db")?;
        if dir.join("conf").exists() {
            open("conf")?.sync_data().map_err(|e| sync_error(&e))?;
        }
        data.sync_data().map_err(|e| sync_error(&e))?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| StoreError::io(dir, e))?;
        let shared = Arc::new(Shared::default());
        let inner = Arc::new(Inner {
            db,
            data,
            shared: shared.clone(),
        });
        let weak = Arc::downgrade(&inner);
        std::thread::Builder::new()
            .name("store-sync".into())
            .spawn(move || sync_thread(&shared, &weak))
            .map_err(|e| StoreError::io(dir, e))?;
        Ok(Self(inner))
    }

    /// A ticket covering every write made before this call; [`GroupCommit::wait`] for it
    /// later. Taking it costs nothing: no sync starts until someone waits.
    pub(crate) fn ticket(&self) -> u64 {
        let mut s = self.0.shared.lock();
        s.requested += 1;
        s.requested
    }

    /// Return once `ticket` is durable: at once if a sync already covered it, else after
    /// the sync thread's next turn that covers it.
    pub(crate) async fn wait(&self, ticket: u64) -> Result<(), StoreError> {
        let rx = {
            let mut s = self.0.shared.lock();
            if s.completed >= ticket {
                return Ok(());
            }
            let (tx, rx) = oneshot::channel();
            s.waiters.push((ticket, tx));
            if s.idle {
                s.idle = false;
                self.0.shared.work.notify_one();
            }
            rx
        };
        match rx.await {
            Ok(r) => r.map_err(StoreError::from),
            Err(_) => Err(StoreError::Sync("store closed".into())),
        }
    }

    /// Blocking variant for start-up, shutdown and CLI commands.
    pub(crate) fn sync_blocking(&self) -> Result<(), StoreError> {
        let target = self.0.shared.lock().requested;
        sync_now(&self.0.db, &self.0.data).map_err(StoreError::from)?;
        let mut s = self.0.shared.lock();
        s.completed = s.completed.max(target);
        s.syncs += 1;
        Ok(())
    }

    pub(crate) fn syncs(&self) -> u64 {
        self.0.shared.lock().syncs
    }
}

/// The turns: sleep until someone waits, then flush and sync, answer the waiters the
/// sync covered, and go again while any are left.
fn sync_thread(shared: &Shared, inner: &Weak<Inner>) {
    loop {
        let target = {
            let mut s = shared.lock();
            while s.waiters.is_empty() {
                if s.closed {
                    return;
                }
                s.idle = true;
                s = shared.work.wait(s).unwrap_or_else(|p| p.into_inner());
                s.idle = false;
            }
            // Every ticket handed out before the flush starts is covered by it.
            s.requested
        };
        let Some(store) = inner.upgrade() else {
            return;
        };
        // A panic inside sled must not leave the waiters asleep for ever.
        let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            sync_now(&store.db, &store.data)
        }))
        .unwrap_or_else(|_| Err(Failure::Sync("the sync panicked".into())));
        // The last handle may go while the turn ran: then sled closes here.
        drop(store);
        let covered = {
            let mut s = shared.lock();
            if res.is_ok() {
                s.completed = s.completed.max(target);
                s.syncs += 1;
            }
            let (covered, left) = std::mem::take(&mut s.waiters)
                .into_iter()
                .partition(|(t, _)| *t <= target);
            s.waiters = left;
            covered
        };
        // Woken outside the lock; a waiter that went away (client gone) is skipped.
        for (_, reply) in covered {
            let _ = reply.send(res.clone());
        }
    }
}

fn sync_error(e: &std::io::Error) -> StoreError {
    match e.raw_os_error() {
        Some(28) => Failure::Full.into(),
        _ => StoreError::Sync(format!("fdatasync: {e}")),
    }
}

fn sync_now(db: &sled::Db, data: &File) -> Result<(), Failure> {
    db.flush().map_err(|e| match StoreError::from(e) {
        e if e.is_full() => Failure::Full,
        e => Failure::Sync(e.to_string()),
    })?;
    data.sync_data().map_err(|e| match e.raw_os_error() {
        Some(28) => Failure::Full,
        _ => Failure::Sync(format!("fdatasync: {e}")),
    })
}

#[cfg(test)]
mod tests {
    use crate::store::Store;

    #[tokio::test]
    async fn a_ticket_rides_on_a_later_sync() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let before = store.syncs();
        let first = store.pending();
        // Someone else's sync, started after the first commit, covers it.
        store.pending().durable().await.unwrap();
        first.durable().await.unwrap();
        assert_eq!(store.syncs() - before, 1);
        // A commit nobody synced for leads its own sync.
        store.pending().durable().await.unwrap();
        assert_eq!(store.syncs() - before, 2);
        // Joined commits cost one sync; a done one costs none.
        let joined = store
            .pending()
            .and(store.pending())
            .and(super::super::Commit::done());
        joined.durable().await.unwrap();
        super::super::Commit::done().durable().await.unwrap();
        assert_eq!(store.syncs() - before, 3);
    }

    #[tokio::test]
    async fn concurrent_syncs_all_complete_with_at_most_one_each() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let before = store.syncs();
        let mut tasks = Vec::new();
        for _ in 0..32 {
            let s = store.clone();
            tasks.push(tokio::spawn(async move { s.pending().durable().await }));
        }
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        let used = store.syncs() - before;
        assert!((1..=32).contains(&used), "{used}");
    }

    /// A request whose future is dropped while it leads a sync (the client hung up, the
    /// timeout fired) must not leave the group commit wedged for everyone after it.
    #[tokio::test]
    async fn a_leader_dropped_mid_sync_does_not_wedge_later_writers() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        for _ in 0..50 {
            let s = store.clone();
            let leader = tokio::spawn(async move { s.pending().durable().await });
            // Let it take the lead and start its blocking sync, then drop it.
            tokio::task::yield_now().await;
            leader.abort();
            let _ = leader.await;
            let next = tokio::time::timeout(
                std::time::Duration::from_secs(10),
                store.pending().durable(),
            )
            .await;
            assert!(matches!(next, Ok(Ok(()))), "a later sync never finished");
        }
    }
}
