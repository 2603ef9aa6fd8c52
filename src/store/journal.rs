//! The redo journal: what makes an [`super::AtomicWrite`] all-or-nothing across a crash.
//!
//! sled 0.34 makes a `Batch` or a transaction atomic by rolling its I/O buffer twice per
//! call (`pin_log`) under a process-wide write lock, which cut the durable enqueue path
//! to a third. Instead, a change of several keys is first written whole as one journal
//! record (one key: atomic by itself), then applied key by key with plain writes. sled
//! recovers a prefix of its log, so after a crash any change whose writes may be partly
//! missing still has its journal record, and opening the store applies those records
//! again in order (each holds final values, so applying twice changes nothing).
//!
//! Records live in a ring of [`SLOTS`] keys. The checkpoint says every change up to
//! its sequence number is fully applied; it is written (one more key, after those
//! writes in the log) every [`EVERY`] changes, and a slot is reused only once the change
//! it held is at or below it. Open applies the records above the checkpoint: at most
//! a few thousand, whatever the store's size.

use std::collections::BTreeSet;
use std::sync::{Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

use super::StoreError;
use super::codec::{self, Record};

/// The journal's tree. Snapshots, counts and checks skip trees named `__…`.
const TREE: &str = "__journal";
/// Ring size: changes that may be in flight or unchecked at once.
const SLOTS: u64 = 4096;
/// Checkpoint after this many changes (a quarter of the ring: slots free up long
/// before the ring wraps).
const EVERY: u64 = SLOTS / 4;
/// The checkpoint's key; slot keys are 8 bytes, so they never meet it.
const CHECKPOINT_KEY: &[u8] = b"checkpoint";

/// One key's final state in a change: a value, or `None` for a removal.
pub(crate) type Write = (usize, Vec<u8>, Option<Vec<u8>>);

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Entry {
    seq: u64,
    trees: Vec<String>,
    /// (index into `trees`, key, value or removal), applied in this order.
    writes: Vec<(u32, Vec<u8>, Option<Vec<u8>>)>,
}
impl Record for Entry {
    const NAME: &'static str = "journal entry";
    const VERSION: u8 = 1;
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Checkpoint {
    seq: u64,
}
impl Record for Checkpoint {
    const NAME: &'static str = "journal checkpoint";
    const VERSION: u8 = 1;
}

struct State {
    /// The next change's sequence number.
    next: u64,
    /// Changes written to the journal and not yet fully applied.
    open: BTreeSet<u64>,
    /// The checkpoint last written: every change up to it is applied.
    checkpoint: u64,
}

pub(crate) struct Journal {
    tree: sled::Tree,
    state: Mutex<State>,
}

fn slot_key(seq: u64) -> [u8; 8] {
    (seq % SLOTS).to_be_bytes()
}

impl Journal {
    /// Open the journal of `db`, first applying every change above the checkpoint (a
    /// crash may have cut it short). Returns how many were applied again.
    pub(crate) fn open(db: &sled::Db) -> Result<(Journal, usize), StoreError> {
        let tree = db.open_tree(TREE)?;
        let checkpoint = match tree.get(CHECKPOINT_KEY)? {
            Some(v) => codec::decode::<Checkpoint>(&v)?.seq,
            None => 0,
        };
        let mut pending = Vec::new();
        let mut last = checkpoint;
        for r in tree.iter() {
            let (k, v) = r?;
            if k.as_ref() == CHECKPOINT_KEY {
                continue;
            }
            let e: Entry = codec::decode(&v)?;
            last = last.max(e.seq);
            if e.seq > checkpoint {
                pending.push(e);
            }
        }
        pending.sort_by_key(|e| e.seq);
        for e in &pending {
            let trees = e
                .trees
                .iter()
                .map(|n| db.open_tree(n))
                .collect::<Result<Vec<_>, _>>()?;
            for (i, k, v) in &e.writes {
                let t = &trees[*i as usize];
                match v {
                    Some(v) => t.insert(k.as_slice(), v.as_slice())?,
                    None => t.remove(k.as_slice())?,
                };
            }
        }
        // Written after the applied changes: once durable, so are they.
        tree.insert(CHECKPOINT_KEY, codec::encode(&Checkpoint { seq: last })?)?;
        let journal = Journal {
            tree,
            state: Mutex::new(State {
                next: last + 1,
                open: BTreeSet::new(),
                checkpoint: last,
            }),
        };
        Ok((journal, pending.len()))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Write `writes` (to `trees`) as one change: journal record first, then each key.
    pub(crate) fn apply(&self, trees: &[sled::Tree], writes: &[Write]) -> sled::Result<()> {
        let seq = self.begin()?;
        let entry = Entry {
            seq,
            trees: trees
                .iter()
                .map(|t| String::from_utf8_lossy(&t.name()).into_owned())
                .collect(),
            writes: writes
                .iter()
                .map(|(i, k, v)| (*i as u32, k.clone(), v.clone()))
                .collect(),
        };
        let bytes = codec::encode(&entry)
            .map_err(|e| sled::Error::Unsupported(format!("journal entry: {e}")))?;
        self.tree.insert(slot_key(seq), bytes)?;
        for (i, k, v) in writes {
            match v {
                Some(v) => trees[*i].insert(k.as_slice(), v.as_slice())?,
                None => trees[*i].remove(k.as_slice())?,
            };
        }
        // Only a fully applied change leaves `open`: one that failed half-way keeps
        // the checkpoint below it, so the next open applies it again.
        self.end(seq)
    }

    /// Take the next sequence number, once its slot's previous change is checkpointed.
    fn begin(&self) -> sled::Result<u64> {
        let mut s = self.lock();
        let seq = s.next;
        if seq >= s.checkpoint + SLOTS {
            self.advance(&mut s)?;
            if seq >= s.checkpoint + SLOTS {
                // A change failed half-way (its error was returned) 4,096 changes ago.
                return Err(sled::Error::Unsupported(
                    "a change could not be fully written; restart echopilot so the store \
                     applies it again from its journal"
                        .into(),
                ));
            }
        }
        s.next += 1;
        s.open.insert(seq);
        Ok(seq)
    }

    fn end(&self, seq: u64) -> sled::Result<()> {
        let mut s = self.lock();
        s.open.remove(&seq);
        if seq >= s.checkpoint + EVERY {
            self.advance(&mut s)?;
        }
        Ok(())
    }

    /// Checkpoint every change applied so far (before a clean stop or a sync of
    /// record), so the next open applies nothing again.
    pub(crate) fn settle(&self) -> Result<(), StoreError> {
        Ok(self.advance(&mut self.lock())?)
    }

    /// Write the checkpoint below the oldest change still being applied. Under the
    /// state's lock, so checkpoints reach the log in increasing order.
    fn advance(&self, s: &mut State) -> sled::Result<()> {
        let upto = s.open.first().map_or(s.next - 1, |oldest| oldest - 1);
        if upto > s.checkpoint {
            let bytes = codec::encode(&Checkpoint { seq: upto })
                .map_err(|e| sled::Error::Unsupported(format!("journal checkpoint: {e}")))?;
            self.tree.insert(CHECKPOINT_KEY, bytes)?;
            s.checkpoint = upto;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &std::path::Path) -> sled::Db {
        sled::Config::new().path(dir).open().unwrap()
    }

    #[test]
    fn a_change_cut_short_is_applied_again_at_open_and_order_holds() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(dir.path());
        let a = db.open_tree("a").unwrap();
        let b = db.open_tree("b").unwrap();
        {
            let (j, replayed) = Journal::open(&db).unwrap();
            assert_eq!(replayed, 0);
            let trees = [a.clone(), b.clone()];
            j.apply(
                &trees,
                &[
                    (0, b"k".to_vec(), Some(b"1".to_vec())),
                    (1, b"x".to_vec(), None),
                ],
            )
            .unwrap();
            j.apply(&trees, &[(0, b"k".to_vec(), Some(b"2".to_vec()))])
                .unwrap();
            // A third change whose journal record landed but whose writes did not (the
            // crash came between them).
            let e = Entry {
                seq: 3,
                trees: vec!["a".into(), "b".into()],
                writes: vec![
                    (0, b"k".to_vec(), Some(b"3".to_vec())),
                    (1, b"y".to_vec(), Some(b"4".to_vec())),
                ],
            };
            j.tree
                .insert(slot_key(3), codec::encode(&e).unwrap())
                .unwrap();
        }
        b.insert(b"x", b"stale".as_slice()).unwrap();
        let (j, replayed) = Journal::open(&db).unwrap();
        // Nothing checkpointed yet: all three are applied again, in order.
        assert_eq!(replayed, 3);
        assert_eq!(a.get(b"k").unwrap().unwrap().as_ref(), b"3");
        assert_eq!(b.get(b"y").unwrap().unwrap().as_ref(), b"4");
        assert_eq!(b.get(b"x").unwrap(), None);
        // The open checkpointed them; numbering goes on after the highest.
        assert_eq!(Journal::open(&db).unwrap().1, 0);
        assert_eq!(j.lock().next, 4);
    }

    #[test]
    fn the_ring_wraps_only_over_checkpointed_changes() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(dir.path());
        let t = db.open_tree("t").unwrap();
        let (j, _) = Journal::open(&db).unwrap();
        let trees = [t.clone()];
        let n = SLOTS * 2 + 7;
        for i in 0..n {
            j.apply(&trees, &[(0, i.to_be_bytes().to_vec(), Some(vec![1]))])
                .unwrap();
        }
        assert_eq!(t.len() as u64, n);
        assert!(j.tree.len() as u64 <= SLOTS + 1);
        let s = j.lock();
        assert!(s.checkpoint + EVERY > n, "checkpoint {}", s.checkpoint);
        drop(s);
        // A change left half-way stops the checkpoint below it, however many follow.
        let stuck = j.begin().unwrap();
        for i in 0..EVERY * 2 {
            j.apply(&trees, &[(0, i.to_be_bytes().to_vec(), Some(vec![2]))])
                .unwrap();
        }
        assert_eq!(j.lock().checkpoint, stuck - 1);
    }
}
