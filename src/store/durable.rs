//! Group commit: the one path by which a write becomes durable.
//!
//! sled 0.34's `flush()` ends in `sync_file_range`, which survives a process crash but
//! not a power cut (sled issues #1351 and #1452). So after flushing we also `fdatasync`
//! the store's data file. Syncs are shared: every caller that asks while a sync is in
//! flight is served by the next one, so N concurrent writers cost about two syncs, not N.

use std::fs::File;
use std::path::Path;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use super::StoreError;

#[derive(Debug, Default)]
struct State {
    /// Tickets handed out: each `sync()` call takes the next one.
    requested: u64,
    /// Every ticket up to this one is durable.
    completed: u64,
    /// A sync is running now.
    syncing: bool,
    /// How many real syncs ran (for benchmarks: syncs per write).
    syncs: u64,
}

/// Shared group-commit state; cheap to clone.
#[derive(Clone)]
pub(crate) struct GroupCommit {
    db: sled::Db,
    files: Arc<Vec<File>>,
    state: Arc<Mutex<State>>,
    done: watch::Sender<u64>,
}

impl GroupCommit {
    pub(crate) fn new(db: sled::Db, dir: &Path) -> Result<Self, StoreError> {
        // sled 0.34 keeps its log and pages in `db` and its config in `conf`.
        let mut files = Vec::new();
        for name in ["db", "conf"] {
            let p = dir.join(name);
            if p.exists() {
                files.push(File::open(&p).map_err(|e| StoreError::io(&p, e))?);
            }
        }
        let (done, _) = watch::channel(0);
        Ok(Self {
            db,
            files: Arc::new(files),
            state: Arc::new(Mutex::new(State::default())),
            done,
        })
    }

    /// A ticket covering every write made before this call; [`GroupCommit::wait`] for it
    /// later. Taking it costs nothing: no sync starts until someone waits.
    pub(crate) fn ticket(&self) -> u64 {
        let mut s = self.lock();
        s.requested += 1;
        s.requested
    }

    /// Return once `ticket` is durable: at once if a sync already covered it, else by
    /// leading a sync or riding on the one in flight.
    pub(crate) async fn wait(&self, ticket: u64) -> Result<(), StoreError> {
        let mut rx = self.done.subscribe();
        loop {
            let lead = {
                let mut s = self.lock();
                if s.completed >= ticket {
                    return Ok(());
                }
                if s.syncing {
                    false
                } else {
                    s.syncing = true;
                    true
                }
            };
            match lead {
                true => {
                    // This caller leads: one sync covers every ticket handed out before
                    // the flush starts (read there, not here, so that writers arriving
                    // while the blocking task spins up ride along). The whole turn —
                    // sync, publish, hand over — runs on the blocking thread: a leader
                    // whose request is dropped mid-sync (client gone, timeout) must not
                    // leave `syncing` set, or every later writer would wait forever.
                    let this = self.clone();
                    let res = tokio::task::spawn_blocking(move || this.lead()).await;
                    return match res {
                        Ok(r) => r,
                        Err(e) => Err(StoreError::Sync(format!("sync task failed: {e}"))),
                    };
                }
                false => {
                    if rx.changed().await.is_err() {
                        return Err(StoreError::Sync("store closed".into()));
                    }
                }
            }
        }
    }

    /// One leader's turn: sync, mark every ticket handed out before the flush as done,
    /// release the leadership and wake the waiters — even when the sync failed.
    fn lead(&self) -> Result<(), StoreError> {
        let target = self.lock().requested;
        let res = sync_now(&self.db, &self.files);
        let mut s = self.lock();
        s.syncing = false;
        if res.is_ok() {
            s.completed = s.completed.max(target);
            s.syncs += 1;
        }
        drop(s);
        // The waiters covered by it return, the rest elect a new leader.
        self.done.send_modify(|v| *v += 1);
        res
    }

    /// Blocking variant for start-up, shutdown and CLI commands.
    pub(crate) fn sync_blocking(&self) -> Result<(), StoreError> {
        sync_now(&self.db, &self.files)?;
        self.lock().syncs += 1;
        Ok(())
    }

    pub(crate) fn syncs(&self) -> u64 {
        self.lock().syncs
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock leaves only counters behind: keep going.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn sync_now(db: &sled::Db, files: &[File]) -> Result<(), StoreError> {
    db.flush()?;
    for f in files {
        f.sync_data().map_err(|e| match e.raw_os_error() {
            Some(28) => StoreError::Full {
                free: 0,
                reserve: 0,
            },
            _ => StoreError::Sync(format!("fdatasync: {e}")),
        })?;
    }
    Ok(())
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
