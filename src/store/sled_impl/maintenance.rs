//! Maintenance windows in sled: `maintenance_windows` keyed by the window's UUIDv7 bytes,
//! `maintenance_held` keyed by the held message's UUIDv7 bytes (both in time order).

use crate::maintenance::{Held, MaintenanceStore, Window};
use crate::store::{Commit, Store, StoreError, Table};

pub(crate) struct SledMaintenance {
    windows: Table<Window>,
    held: Table<Held>,
    store: Store,
}

impl SledMaintenance {
    pub(crate) fn open(store: &Store) -> Result<SledMaintenance, StoreError> {
        Ok(SledMaintenance {
            windows: store.table("maintenance_windows")?,
            held: store.table("maintenance_held")?,
            store: store.clone(),
        })
    }
}

fn key(id: &str) -> Result<[u8; 16], StoreError> {
    uuid::Uuid::parse_str(id)
        .map(|u| *u.as_bytes())
        .map_err(|_| StoreError::Probe(format!("bad record id {id}")))
}

impl MaintenanceStore for SledMaintenance {
    fn add_window(&self, window: &Window) -> Result<Commit, StoreError> {
        self.windows.insert(key(&window.id)?, window)?;
        Ok(self.store.pending())
    }

    fn windows_ending_after(&self, after_ms: i64) -> Result<Vec<Window>, StoreError> {
        let mut out = Vec::new();
        for r in self.windows.iter() {
            let (_, w) = r?;
            if w.end_ms > after_ms {
                out.push(w);
            }
        }
        out.sort_by_key(|w| (w.start_ms, w.end_ms));
        Ok(out)
    }

    fn hold_message(&self, message: &Held) -> Result<Commit, StoreError> {
        self.held.insert(key(&message.id)?, message)?;
        Ok(self.store.pending())
    }

    fn held_messages(&self, limit: usize) -> Result<Vec<Held>, StoreError> {
        self.held
            .iter()
            .take(limit)
            .map(|r| r.map(|(_, h)| h))
            .collect()
    }

    fn held_count(&self) -> Result<usize, StoreError> {
        Ok(self.held.len())
    }

    fn release_message(&self, id: &str) -> Result<Commit, StoreError> {
        self.held.remove(key(id)?)?;
        Ok(self.store.pending())
    }
}
