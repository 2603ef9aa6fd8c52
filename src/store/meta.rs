//! The `meta` tree: schema version, instance facts (first start, boots, last deployment)
//! and the health probe key.

use serde::{Deserialize, Serialize};

use super::{Record, SCHEMA_VERSION, Store, StoreError};

const TREE: &str = "meta";
const SCHEMA_KEY: &str = "schema_version";
const INSTANCE_KEY: &str = "instance";
const PROBE_KEY: &str = "probe";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Schema {
    version: u32,
}
impl Record for Schema {
    const NAME: &'static str = "schema version";
    const VERSION: u8 = 1;
}

/// Facts about this installation that outlive restarts.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Instance {
    /// First start on this home, RFC 3339.
    pub first_started_at: String,
    /// The start before this one (RFC 3339), empty on the first.
    pub previous_started_at: String,
    /// This start, RFC 3339.
    pub started_at: String,
    /// How many times the server started on this home.
    pub boots: u64,
    /// Version and commit of the previous run (empty on the first): a change is a new
    /// deployment.
    pub previous_version: String,
    pub previous_commit: String,
    pub version: String,
    pub commit: String,
}
impl Record for Instance {
    const NAME: &'static str = "instance";
    const VERSION: u8 = 1;
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Probe {
    nonce: u64,
}
impl Record for Probe {
    const NAME: &'static str = "probe";
    const VERSION: u8 = 1;
}

/// Check (or write) the schema version when the store opens.
pub(super) fn open(store: &Store) -> Result<(), StoreError> {
    let t = store.table::<Schema>(TREE)?;
    match t.get(SCHEMA_KEY)? {
        None => t.insert(
            SCHEMA_KEY,
            &Schema {
                version: SCHEMA_VERSION,
            },
        )?,
        Some(s) if s.version > SCHEMA_VERSION => {
            return Err(StoreError::SchemaTooNew {
                found: s.version,
                supported: SCHEMA_VERSION,
            });
        }
        // 1 → 2: the job and audit stores rebuild their indexes at open when their own
        // format mark is missing; the version keeps an older binary off this store.
        Some(s) if s.version < SCHEMA_VERSION => t.insert(
            SCHEMA_KEY,
            &Schema {
                version: SCHEMA_VERSION,
            },
        )?,
        Some(_) => {}
    }
    Ok(())
}

/// The schema version recorded in the store.
pub fn schema_version(store: &Store) -> Result<u32, StoreError> {
    Ok(store
        .table::<Schema>(TREE)?
        .get(SCHEMA_KEY)?
        .map(|s| s.version)
        .unwrap_or(0))
}

/// Record a server start and return the instance facts (first start, previous run).
pub fn record_boot(
    store: &Store,
    now: &str,
    version: &str,
    commit: &str,
) -> Result<Instance, StoreError> {
    let t = store.table::<Instance>(TREE)?;
    let next = t.update(INSTANCE_KEY, |prev| {
        Some(match prev {
            None => Instance {
                first_started_at: now.to_string(),
                previous_started_at: String::new(),
                started_at: now.to_string(),
                boots: 1,
                previous_version: String::new(),
                previous_commit: String::new(),
                version: version.to_string(),
                commit: commit.to_string(),
            },
            Some(p) => Instance {
                first_started_at: p.first_started_at,
                previous_started_at: p.started_at,
                started_at: now.to_string(),
                boots: p.boots + 1,
                previous_version: p.version,
                previous_commit: p.commit,
                version: version.to_string(),
                commit: commit.to_string(),
            },
        })
    })?;
    store.checkpoint()?;
    next.ok_or_else(|| StoreError::Probe("instance record vanished".into()))
}

/// The instance facts, if the server ever started on this home.
pub fn instance(store: &Store) -> Result<Option<Instance>, StoreError> {
    store.table::<Instance>(TREE)?.get(INSTANCE_KEY)
}

pub(super) fn probe(store: &Store) -> Result<(), StoreError> {
    let t = store.table::<Probe>(TREE)?;
    let nonce: u64 = rand::random();
    t.insert(PROBE_KEY, &Probe { nonce })?;
    match t.get(PROBE_KEY)? {
        Some(p) if p.nonce == nonce => Ok(()),
        Some(_) => Err(StoreError::Probe("read back a different value".into())),
        None => Err(StoreError::Probe("probe key missing after write".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_version_written_and_newer_refused() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Store::open(dir.path()).unwrap();
            assert_eq!(schema_version(&s).unwrap(), SCHEMA_VERSION);
            s.table::<Schema>(TREE)
                .unwrap()
                .insert(
                    SCHEMA_KEY,
                    &Schema {
                        version: SCHEMA_VERSION + 1,
                    },
                )
                .unwrap();
            s.checkpoint().unwrap();
        }
        let e = Store::open(dir.path()).unwrap_err();
        assert!(matches!(e, StoreError::SchemaTooNew { .. }), "{e}");
    }

    #[test]
    fn boots_and_first_start_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let first = {
            let s = Store::open(dir.path()).unwrap();
            record_boot(&s, "2026-01-01T00:00:00Z", "0.1.0", "aaa").unwrap()
        };
        assert_eq!(first.boots, 1);
        let s = Store::open(dir.path()).unwrap();
        let second = record_boot(&s, "2026-01-02T00:00:00Z", "0.1.1", "bbb").unwrap();
        assert_eq!(second.boots, 2);
        assert_eq!(second.first_started_at, "2026-01-01T00:00:00Z");
        assert_eq!(second.previous_commit, "aaa");
        s.probe().unwrap();
    }

    #[test]
    fn second_open_on_same_home_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let _s = Store::open(dir.path()).unwrap();
        let e = Store::open(dir.path()).unwrap_err();
        assert!(e.to_string().contains("already running"), "{e}");
    }
}
