//! Point-in-time reads across trees, which sled 0.34 does not have.
//!
//! Two locks make a snapshot consistent while writers keep going:
//! - **Change groups** (`groups`): a request that changes several trees (a job and the
//!   audit event of its creation) holds this shared from its first write to its last.
//!   A snapshot takes it exclusively for an instant, so it starts between groups,
//!   never inside one.
//! - **The latch** (`latch`): every single write through [`super::Table`] holds it
//!   shared while it checks for a running capture and writes. Under it, before the
//!   first change of a key after the snapshot's start, the key's old value (or its
//!   absence) is kept. The snapshot reads the live trees and prefers kept values, so
//!   it sees each tree exactly as it was at its start, however long it reads.
//!
//! Writers wait only while the snapshot starts (in-flight groups finish); reading
//! 10⁶ records then runs beside them. Kept values cost memory only for keys written
//! during the snapshot, and are dropped when it ends.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::future::Future;
use std::sync::{Arc, Condvar, Mutex, RwLock};

use sled::IVec;

tokio::task_local! {
    /// Set inside a change group, so a nested one does not wait on itself.
    static IN_GROUP: ();
}

type Key = (IVec, IVec);
/// Called with each record of a captured tree.
pub(crate) type Visit<'a> = dyn FnMut(&[u8], &[u8]) -> Result<(), String> + 'a;

/// Old values of keys changed since a snapshot started.
#[derive(Default)]
pub(crate) struct Capture {
    kept: Mutex<HashMap<Key, Option<IVec>>>,
}

impl Capture {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Option<IVec>>> {
        self.kept.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keep `key`'s value as of the snapshot, unless an earlier change kept it. Read
    /// under the map's lock, so the first keeper always sees the value from before any
    /// change made after the start.
    fn keep(&self, tree: &sled::Tree, key: &[u8]) -> sled::Result<()> {
        let k = (tree.name(), IVec::from(key));
        if let Entry::Vacant(slot) = self.lock().entry(k) {
            slot.insert(tree.get(key)?);
        }
        Ok(())
    }

    /// The snapshot's view of `tree`: calls `f` for every record as it was at the
    /// start, in key order for the live part and then the removed ones.
    pub(crate) fn read(&self, tree: &sled::Tree, f: &mut Visit<'_>) -> Result<u64, String> {
        /// Records walked between two looks at the kept values: writers keeping a value
        /// wait on that lock, so it is taken once per chunk, not once per record.
        const CHUNK: usize = 1024;
        let name = tree.name();
        // Every key the walk met, in key order (the walk is ordered): a kept key that
        // is not among them was removed before the walk reached it.
        let mut walked: Vec<IVec> = Vec::new();
        let mut n = 0u64;
        let mut iter = tree.iter();
        let mut chunk: Vec<(IVec, IVec)> = Vec::with_capacity(CHUNK);
        loop {
            chunk.clear();
            for r in iter.by_ref().take(CHUNK) {
                chunk.push(r.map_err(|e| e.to_string())?);
            }
            if chunk.is_empty() {
                break;
            }
            // Looked up after the walk read them: a value changed since the start was
            // kept before it changed, so the kept one wins.
            let kept: Vec<Option<Option<IVec>>> = {
                let map = self.lock();
                if map.is_empty() {
                    Vec::new()
                } else {
                    chunk
                        .iter()
                        .map(|(k, _)| map.get(&(name.clone(), k.clone())).cloned())
                        .collect()
                }
            };
            for (i, (k, v)) in chunk.iter().enumerate() {
                let value = match kept.get(i) {
                    Some(Some(old)) => old.as_ref(),
                    _ => Some(v),
                };
                if let Some(value) = value {
                    f(k, value)?;
                    n += 1;
                }
            }
            walked.extend(chunk.drain(..).map(|(k, _)| k));
            // A long walk leaves the cores to the requests served beside it.
            std::thread::yield_now();
        }
        let mut removed: Vec<(IVec, IVec)> = self
            .lock()
            .iter()
            .filter(|((t, k), _)| *t == name && walked.binary_search(k).is_err())
            .filter_map(|((_, k), old)| old.clone().map(|o| (k.clone(), o)))
            .collect();
        removed.sort();
        for (k, v) in removed {
            f(&k, &v)?;
            n += 1;
        }
        Ok(n)
    }
}

/// Change groups in flight, and whether a snapshot is starting (new groups wait).
#[derive(Default)]
struct Groups {
    shared: usize,
    closing: bool,
}

/// The store's write gate; one per store, shared by every [`super::Table`].
#[derive(Default)]
pub(crate) struct Gate {
    groups: Mutex<Groups>,
    /// Wakes groups waiting for a snapshot's start to pass.
    opened: tokio::sync::Notify,
    /// Wakes a snapshot waiting for the groups in flight to end.
    drained: Condvar,
    latch: RwLock<Option<Arc<Capture>>>,
    /// One snapshot at a time.
    turn: Mutex<()>,
}

/// One change group in flight; dropping it ends the group.
struct Member<'a>(&'a Gate);

impl Drop for Member<'_> {
    fn drop(&mut self) {
        let mut g = self.0.lock_groups();
        g.shared -= 1;
        if g.shared == 0 && g.closing {
            self.0.drained.notify_all();
        }
    }
}

impl Gate {
    fn lock_groups(&self) -> std::sync::MutexGuard<'_, Groups> {
        self.groups.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Run one write: keep the old values of `keys` first when a snapshot runs.
    pub(crate) fn write<R>(
        &self,
        tree: &sled::Tree,
        keys: &mut dyn Iterator<Item = &[u8]>,
        f: impl FnOnce() -> sled::Result<R>,
    ) -> sled::Result<R> {
        let latch = self.latch.read().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = latch.as_ref() {
            for k in keys {
                c.keep(tree, k)?;
            }
        }
        f()
    }

    /// As [`Gate::write`] for one change to keys of several trees (an `AtomicWrite`).
    pub(crate) fn write_keys<R>(
        &self,
        keys: &[(&sled::Tree, &[u8])],
        f: impl FnOnce() -> sled::Result<R>,
    ) -> sled::Result<R> {
        let latch = self.latch.read().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = latch.as_ref() {
            for (tree, k) in keys {
                c.keep(tree, k)?;
            }
        }
        f()
    }

    /// As [`Gate::write`] for a write that touches every key of the tree (`clear`).
    pub(crate) fn write_all<R>(
        &self,
        tree: &sled::Tree,
        f: impl FnOnce() -> sled::Result<R>,
    ) -> sled::Result<R> {
        let latch = self.latch.read().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = latch.as_ref() {
            for r in tree.iter().keys() {
                c.keep(tree, &r?)?;
            }
        }
        f()
    }

    /// Run `f` as one change group: a snapshot starts before it or after it.
    pub(crate) async fn grouped<F: Future>(&self, f: F) -> F::Output {
        if IN_GROUP.try_with(|_| ()).is_ok() {
            return f.await;
        }
        let _member = loop {
            let opened = self.opened.notified();
            tokio::pin!(opened);
            // Registered before the check, so a wake-up between the two is not lost.
            opened.as_mut().enable();
            {
                let mut g = self.lock_groups();
                if !g.closing {
                    g.shared += 1;
                    break Member(self);
                }
            }
            opened.await;
        };
        IN_GROUP.scope((), f).await
    }

    /// Start a capture. Blocks until the change groups in flight end (milliseconds);
    /// new groups wait only for this call. Call it from a blocking thread, never from
    /// inside a change group (it would wait for itself: `/api/backups` runs outside).
    pub(crate) fn begin(&self) -> Running<'_> {
        let turn = self.turn.lock().unwrap_or_else(|p| p.into_inner());
        let capture = Arc::new(Capture::default());
        {
            let mut g = self.lock_groups();
            g.closing = true;
            while g.shared > 0 {
                g = self.drained.wait(g).unwrap_or_else(|p| p.into_inner());
            }
            *self.latch.write().unwrap_or_else(|p| p.into_inner()) = Some(capture.clone());
            g.closing = false;
        }
        self.opened.notify_waiters();
        Running {
            gate: self,
            capture,
            _turn: turn,
        }
    }
}

/// A running capture; dropping it ends the capture.
pub(crate) struct Running<'a> {
    gate: &'a Gate,
    pub(crate) capture: Arc<Capture>,
    _turn: std::sync::MutexGuard<'a, ()>,
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        *self.gate.latch.write().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    use crate::store::{Record, Store};

    #[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
    struct N(u32);
    impl Record for N {
        const NAME: &'static str = "n";
        const VERSION: u8 = 1;
    }

    fn view(store: &Store, tree: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
        let running = store.gate.begin();
        let t = store.db.open_tree(tree).unwrap();
        let mut out = Vec::new();
        running
            .capture
            .read(&t, &mut |k, v| {
                out.push((k.to_vec(), v.to_vec()));
                Ok(())
            })
            .unwrap();
        out
    }

    #[test]
    fn a_capture_sees_every_key_as_it_was_when_it_began() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let t = store.table::<N>("t").unwrap();
        for i in 0..10u8 {
            t.insert([i], &N(u32::from(i))).unwrap();
        }
        let before = view(&store, "t");
        let running = store.gate.begin();
        // Changed, removed and added after the start, some before the walk reaches
        // them and some after.
        t.insert([2], &N(200)).unwrap();
        t.remove([3]).unwrap();
        t.insert([42], &N(42)).unwrap();
        t.update([9], |_| Some(N(900))).unwrap();
        t.apply(&[(vec![5], N(500))], &[vec![6]]).unwrap();
        let tree = store.db.open_tree("t").unwrap();
        let mut seen = Vec::new();
        running
            .capture
            .read(&tree, &mut |k, v| {
                if k == [7] {
                    // Mid-walk: 1 was passed already, 8 not yet.
                    t.remove([1]).unwrap();
                    t.insert([8], &N(800)).unwrap();
                }
                seen.push((k.to_vec(), v.to_vec()));
                Ok(())
            })
            .unwrap();
        seen.sort();
        assert_eq!(seen, before);
        drop(running);
        // After the capture the live values show again.
        assert_eq!(t.get([2]).unwrap(), Some(N(200)));
        assert_eq!(view(&store, "t").len(), 8);
    }

    #[tokio::test]
    async fn a_capture_waits_for_change_groups_in_flight() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let t = store.table::<N>("t").unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let s = store.clone();
        let t2 = t.clone();
        let group = tokio::spawn(async move {
            s.grouped(async move {
                t2.insert([1], &N(1)).unwrap();
                let _ = rx.await;
                t2.insert([2], &N(2)).unwrap();
            })
            .await
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let s = store.clone();
        let snap = tokio::task::spawn_blocking(move || view(&s, "t"));
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(
            !snap.is_finished(),
            "the capture began inside a change group"
        );
        tx.send(()).unwrap();
        group.await.unwrap();
        // Both writes of the group, or (had it started first) neither.
        assert_eq!(snap.await.unwrap().len(), 2);
    }
}
