//! Flags in sled: one tree `flags` holding both the flags (`f/<name>`) and their change
//! records (`c/<at_ms big-endian><random>`), so a flag and its change are written in one
//! atomic batch.

use serde::{Deserialize, Serialize};

use crate::flags::{Flag, FlagChange, FlagStore};
use crate::store::{Commit, Record, Store, StoreError, Table};

const TREE: &str = "flags";
const FLAG: &[u8] = b"f/";
const CHANGE: &[u8] = b"c/";

/// A row of the `flags` tree.
#[derive(Debug, Clone, Serialize, Deserialize)]
enum Row {
    Flag(Flag),
    Change(FlagChange),
}

impl Record for Row {
    const NAME: &'static str = "feature flag row";
    const VERSION: u8 = 1;
}

pub(crate) struct SledFlags {
    table: Table<Row>,
    store: Store,
}

impl SledFlags {
    pub(crate) fn open(store: &Store) -> Result<SledFlags, StoreError> {
        Ok(SledFlags {
            table: store.table(TREE)?,
            store: store.clone(),
        })
    }
}

fn change_key(at_ms: i64) -> Vec<u8> {
    let mut k = CHANGE.to_vec();
    k.extend_from_slice(&(at_ms.max(0) as u64).to_be_bytes());
    k
}

impl FlagStore for SledFlags {
    fn load_flags(&self) -> Result<Vec<Flag>, StoreError> {
        let mut out = Vec::new();
        for r in self.table.scan_prefix(FLAG) {
            if let (_, Row::Flag(f)) = r? {
                out.push(f);
            }
        }
        Ok(out)
    }

    fn save_flag(&self, flag: &Flag, change: Option<&FlagChange>) -> Result<Commit, StoreError> {
        let mut key = FLAG.to_vec();
        key.extend_from_slice(flag.name.as_bytes());
        let mut puts = vec![(key, Row::Flag(flag.clone()))];
        if let Some(c) = change {
            // Random tail: two changes in one millisecond both stay.
            let mut k = change_key(c.at_ms);
            k.extend_from_slice(&uuid::Uuid::new_v4().as_bytes()[..8]);
            puts.push((k, Row::Change(c.clone())));
        }
        self.table.apply(&puts, &[])?;
        Ok(self.store.pending())
    }

    fn changes_since(&self, since_ms: i64, limit: usize) -> Result<Vec<FlagChange>, StoreError> {
        let mut end = CHANGE.to_vec();
        end.extend_from_slice(&[0xff; 17]);
        let mut out = Vec::new();
        for r in self.table.range(change_key(since_ms)..end) {
            if let (_, Row::Change(c)) = r? {
                out.push(c);
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }
}
