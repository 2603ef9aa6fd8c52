//! Incidents in sled: the tree `incidents`, keyed by the UUIDv7's 16 bytes (time order);
//! a change is a compare-and-swap loop on the record.

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

fn key(id: &str) -> Option<[u8; 16]> {
    uuid::Uuid::parse_str(id).ok().map(|u| *u.as_bytes())
}

impl IncidentStore for SledIncidents {
    fn insert_incident(&self, incident: &Incident) -> Result<Commit, StoreError> {
        let k = key(&incident.id)
            .ok_or_else(|| StoreError::Probe(format!("bad incident id {}", incident.id)))?;
        self.table.insert(k, incident)?;
        Ok(self.store.pending())
    }

    fn get_incident(&self, id: &str) -> Result<Option<Incident>, StoreError> {
        match key(id) {
            Some(k) => self.table.get(k),
            None => Ok(None),
        }
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
        let k = key(id).ok_or_else(|| IncidentError::NotFound(id.to_string()))?;
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
