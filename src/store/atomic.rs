//! Writes to several trees that commit as one (a record and its index entries): all of
//! them or none, also across a crash, and a snapshot sees all or none. The store's
//! redo journal makes it atomic across a crash (see `journal`), the gate's latch for a
//! snapshot; a SQL backend says the same with `BEGIN … COMMIT`.
//!
//! A tree written through `AtomicWrite` is written only that way (a start-up rebuild's
//! `clear` aside): opening the store applies unchecked journal records again, which
//! would overwrite a plain write made after them. The one exception is a key written
//! once and never again (an audit event's seq): no journal record can hold it but the
//! one that wrote it, so a plain write of it cannot be overwritten.

use std::sync::Arc;

use super::capture::Gate;
use super::codec::{self, Record};
use super::journal::{Journal, Write};
use super::space::Space;
use super::{StoreError, Table};

/// What every table of one store shares, taken from the first table written.
struct Shared {
    gate: Arc<Gate>,
    space: Arc<Space>,
    journal: Arc<Journal>,
}

/// Build with [`Table::put_in`] and [`Table::remove_in`], then [`AtomicWrite::commit`].
/// Later writes of a key replace earlier ones.
#[derive(Default)]
pub struct AtomicWrite {
    trees: Vec<sled::Tree>,
    writes: Vec<Write>,
    shared: Option<Shared>,
}

impl<T: Record> Table<T> {
    fn slot(&self, w: &mut AtomicWrite) -> usize {
        if w.shared.is_none() {
            w.shared = Some(Shared {
                gate: self.gate.clone(),
                space: self.space.clone(),
                journal: self.journal.clone(),
            });
        }
        let name = self.tree.name();
        match w.trees.iter().position(|t| t.name() == name) {
            Some(i) => i,
            None => {
                w.trees.push(self.tree.clone());
                w.trees.len() - 1
            }
        }
    }

    /// Add `key → value` to `w`.
    pub fn put_in(
        &self,
        w: &mut AtomicWrite,
        key: impl AsRef<[u8]>,
        value: &T,
    ) -> Result<(), StoreError> {
        let bytes = codec::encode(value)?;
        let i = self.slot(w);
        w.writes.push((i, key.as_ref().to_vec(), Some(bytes)));
        Ok(())
    }

    /// Add the removal of `key` to `w`.
    pub fn remove_in(&self, w: &mut AtomicWrite, key: impl AsRef<[u8]>) {
        let i = self.slot(w);
        w.writes.push((i, key.as_ref().to_vec(), None));
    }
}

impl AtomicWrite {
    pub fn new() -> Self {
        Self::default()
    }

    /// How many writes it holds.
    pub fn len(&self) -> usize {
        self.writes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.writes.is_empty()
    }

    /// Apply every write as one change: journal record, then each key.
    pub fn commit(self) -> Result<(), StoreError> {
        let Some(shared) = &self.shared else {
            return Ok(());
        };
        shared.space.check()?;
        let keys: Vec<(&sled::Tree, &[u8])> = self
            .writes
            .iter()
            .map(|(i, k, _)| (&self.trees[*i], k.as_slice()))
            .collect();
        shared
            .gate
            .write_keys(&keys, || shared.journal.apply(&self.trees, &self.writes))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    use super::*;
    use crate::store::Store;

    #[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
    struct N(u32);
    impl Record for N {
        const NAME: &'static str = "n";
        const VERSION: u8 = 1;
    }

    #[test]
    fn writes_to_several_tables_land_together() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let a = store.table::<N>("a").unwrap();
        let b = store.table::<N>("b").unwrap();
        a.insert([9], &N(9)).unwrap();
        let mut w = AtomicWrite::new();
        a.put_in(&mut w, [1], &N(1)).unwrap();
        b.put_in(&mut w, [2], &N(2)).unwrap();
        a.remove_in(&mut w, [9]);
        assert_eq!(w.len(), 3);
        assert_eq!(a.get([1]).unwrap(), None);
        w.commit().unwrap();
        assert_eq!(a.get([1]).unwrap(), Some(N(1)));
        assert_eq!(b.get([2]).unwrap(), Some(N(2)));
        assert_eq!(a.get([9]).unwrap(), None);
        AtomicWrite::new().commit().unwrap();
    }
}
