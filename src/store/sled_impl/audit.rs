//! The audit trail on sled: the `audit` tree, big-endian seq → [`Event`]. The chain's
//! tail (last seq and hash) is read at open and kept under a lock that serialises
//! appends.

use std::sync::Mutex;

use crate::audit::Event;
use crate::audit::chain::GENESIS;
use crate::audit::store::{AuditStore, Events};
use crate::store::{Commit, Store, StoreError, Table};

pub(crate) struct SledAudit {
    store: Store,
    table: Table<Event>,
    tail: Mutex<(u64, String)>,
}

impl SledAudit {
    pub(crate) fn open(store: &Store) -> Result<SledAudit, StoreError> {
        let table: Table<Event> = store.table("audit")?;
        let tail = match table.last()? {
            Some((_, e)) => (e.seq, e.hash),
            None => (0, GENESIS.to_string()),
        };
        Ok(SledAudit {
            store: store.clone(),
            table,
            tail: Mutex::new(tail),
        })
    }
}

impl AuditStore for SledAudit {
    fn append(
        &self,
        make: &mut dyn FnMut(u64, &str) -> Event,
    ) -> Result<(Event, Commit), StoreError> {
        let mut tail = self.tail.lock().unwrap_or_else(|p| p.into_inner());
        let event = make(tail.0, &tail.1);
        self.table.insert(event.seq.to_be_bytes(), &event)?;
        *tail = (event.seq, event.hash.clone());
        Ok((event, self.store.pending()))
    }

    fn last(&self) -> Result<Option<Event>, StoreError> {
        Ok(self.table.last()?.map(|(_, e)| e))
    }

    fn get(&self, seq: u64) -> Result<Option<Event>, StoreError> {
        self.table.get(seq.to_be_bytes())
    }

    fn since_seq(&self, from: u64) -> Events<'_> {
        Box::new(
            self.table
                .range(from.to_be_bytes()..)
                .map(|r| r.map(|(_, e)| e)),
        )
    }

    fn newest_first(&self, before: Option<u64>) -> Events<'_> {
        match before {
            Some(b) => Box::new(
                self.table
                    .range(..b.to_be_bytes())
                    .rev()
                    .map(|r| r.map(|(_, e)| e)),
            ),
            None => Box::new(self.table.iter().rev().map(|r| r.map(|(_, e)| e))),
        }
    }
}
