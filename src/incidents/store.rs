//! What incidents need from storage, in their own words.

use super::{Incident, IncidentError};
use crate::store::{Commit, StoreError};

/// A change to one incident: given the current record, the new one (or why not).
pub type Change<'a> = &'a mut dyn FnMut(Incident) -> Result<Incident, IncidentError>;

pub trait IncidentStore: Send + Sync {
    fn insert_incident(&self, incident: &Incident) -> Result<Commit, StoreError>;
    fn get_incident(&self, id: &str) -> Result<Option<Incident>, StoreError>;
    /// Newest first, at most `limit`.
    fn list_incidents(&self, limit: usize) -> Result<Vec<Incident>, StoreError>;
    /// Apply `change` to the incident as one transaction (retried if someone else
    /// changed it meanwhile); `NotFound` for an unknown id.
    fn change_incident(
        &self,
        id: &str,
        change: Change<'_>,
    ) -> Result<(Incident, Commit), IncidentError>;
    /// Resolved P0 and P1 incidents without a postmortem.
    fn awaiting_postmortem(&self) -> Result<Vec<Incident>, StoreError>;
}
