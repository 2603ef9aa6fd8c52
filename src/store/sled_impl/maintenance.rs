//! Maintenance windows in sled: `maintenance_windows` and `maintenance_held`, each keyed by
//! the record's id as text (UUIDv7s in lower case hex: time order).

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

impl MaintenanceStore for SledMaintenance {
    fn add_window(&self, window: &Window) -> Result<Commit, StoreError> {
        self.windows.insert(window.id.as_bytes(), window)?;
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

    fn get_window(&self, id: &str) -> Result<Option<Window>, StoreError> {
        self.windows.get(id.as_bytes())
    }

    fn set_window_end(
        &self,
        id: &str,
        end_ms: i64,
    ) -> Result<Option<(Window, Commit)>, StoreError> {
        let w = self.windows.update(id.as_bytes(), |w| {
            w.map(|mut w| {
                w.end_ms = end_ms;
                w
            })
        })?;
        Ok(w.map(|w| (w, self.store.pending())))
    }

    fn hold_message(&self, message: &Held) -> Result<Commit, StoreError> {
        self.held.insert(message.id.as_bytes(), message)?;
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
        self.held.remove(id.as_bytes())?;
        Ok(self.store.pending())
    }
}
