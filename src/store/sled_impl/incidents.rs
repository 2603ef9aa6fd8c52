//! Incidents in sled: the tree `incidents`, keyed by the id's text (a UUIDv7 in lower
//! case hex sorts by time as text too); a change is a compare-and-swap loop on the record.

use crate::incidents::store::Change;
use crate::incidents::{Incident, IncidentError, IncidentStore, Status};
use crate::store::{Cas, Commit, Store, StoreError, Table};

const TREE: &str = "incidents";

pub(crate) struct SledIncidents {
    table: Table<Incident>,
    store: Store,
}

impl SledIncidents {
    pub(crate) fn open(store: &Store) -> Result<SledIncidents, StoreError> {
        Ok(SledIncidents {
            table: store.table(TREE)?,
            store: store.clone(),
        })
    }
}

impl IncidentStore for SledIncidents {
    fn insert_incident(&self, incident: &Incident) -> Result<Commit, StoreError> {
        self.table.insert(incident.id.as_bytes(), incident)?;
        Ok(self.store.pending())
    }

    fn get_incident(&self, id: &str) -> Result<Option<Incident>, StoreError> {
        self.table.get(id.as_bytes())
    }

    fn list_incidents(&self, limit: usize) -> Result<Vec<Incident>, StoreError> {
        self.table
            .iter()
            .rev()
            .take(limit)
            .map(|r| r.map(|(_, i)| i))
            .collect()
    }

    fn change_incident(
        &self,
        id: &str,
        change: Change<'_>,
    ) -> Result<(Incident, Commit), IncidentError> {
        let k = id.as_bytes();
        let mut current = self.table.get(k)?;
        loop {
            let Some(old) = current else {
                return Err(IncidentError::NotFound(id.to_string()));
            };
            let new = change(old.clone())?;
            match self.table.compare_and_swap(k, Some(&old), Some(&new))? {
                Cas::Swapped => return Ok((new, self.store.pending())),
                Cas::Conflict(now) => current = now,
            }
        }
    }

    fn awaiting_postmortem(&self) -> Result<Vec<Incident>, StoreError> {
        let mut out = Vec::new();
        for r in self.table.iter() {
            let (_, i) = r?;
            if i.status == Status::Resolved
                && i.severity.needs_postmortem()
                && i.postmortem.is_none()
            {
                out.push(i);
            }
        }
        Ok(out)
    }
}
