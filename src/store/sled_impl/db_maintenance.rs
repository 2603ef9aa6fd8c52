//! Store maintenance that needs to know which record type each tree holds: the deep
//! check (`echopilot db check --deep`: every record through the codec, every job index
//! entry against its job) and the oldest / newest record times of `db stats`.
//! It reads through the backup domain's snapshot view, so a deep check sees one
//! instant across trees even beside a writer.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;

use super::{audit, audit_keys};
use crate::audit::Event;
use crate::backup::BackupError;
use crate::backup::store::SnapshotSource;
use crate::jobs::Job;
use crate::jobs::model::time;
use crate::scheduler::schedules::Schedule;
use crate::slo::Minute;
use crate::slo::alerts::Alert;
use crate::store::codec::{self, CodecError};
use crate::store::{Record, Store, StoreError};

/// Job index trees: each key ends with the 16-byte id of a job in `jobs`.
const JOB_INDEXES: [&str; 5] = [
    "jobs_ready",
    "jobs_sched",
    "jobs_running",
    "jobs_status",
    "jobs_finished",
];

fn check<T: Record>(v: &[u8]) -> Result<(), CodecError> {
    codec::decode::<T>(v).map(|_| ())
}

/// How to read the values of a tree, for the trees whose type is known here.
type Checker = fn(&[u8]) -> Result<(), CodecError>;
/// Oldest and newest record time.
pub(crate) type Span = (Option<DateTime<Utc>>, Option<DateTime<Utc>>);

fn checker(tree: &str) -> Option<Checker> {
    Some(match tree {
        "jobs" => check::<Job>,
        "audit" => check::<Event>,
        "audit_index" => check::<audit::Entry>,
        "schedules" => check::<Schedule>,
        "alerts" => check::<Alert>,
        "slo_minutes" => check::<Minute>,
        _ => return None,
    })
}

/// What the deep check found.
#[derive(Debug, Default)]
pub(crate) struct DeepReport {
    /// (tree, records, decoded through the codec or only framed).
    pub trees: Vec<(String, u64, bool)>,
    pub problems: Vec<String>,
}

/// Read every record: decode the known types, check every value carries a format
/// version byte, and every job index entry names a stored job.
pub(crate) fn deep_check(store: &Store) -> Result<DeepReport, BackupError> {
    let mut report = DeepReport::default();
    store.read_snapshot(&mut |view| {
        let mut job_ids: HashSet<Vec<u8>> = HashSet::new();
        let mut seqs: HashSet<Vec<u8>> = HashSet::new();
        let mut trees = view.trees();
        // Jobs first, so the indexes can be checked against them.
        trees.sort_by_key(|t| t != "jobs");
        for tree in trees {
            let decode = checker(&tree);
            let is_index = JOB_INDEXES.contains(&tree.as_str());
            let mut problems = Vec::new();
            let n = view.records(&tree, &mut |k, v| {
                if problems.len() < 20 {
                    if v.is_empty() {
                        problems.push(format!("{tree} {}: empty value", hex(k)));
                    } else if let Some(d) = decode
                        && let Err(e) = d(v)
                    {
                        problems.push(format!("{tree} {}: {e}", hex(k)));
                    }
                    if is_index && (k.len() < 16 || !job_ids.contains(&k[k.len() - 16..])) {
                        problems.push(format!("{tree} {}: index entry without its job", hex(k)));
                    }
                    // `audit` sorts before `audit_index`: its seqs are known here.
                    if tree == "audit_index"
                        && let Some(missing) = audit_bits_without_events(k, v, &seqs)
                    {
                        problems.push(format!(
                            "{tree} {}: index entry without its event (seq {missing})",
                            hex(k)
                        ));
                    }
                }
                match tree.as_str() {
                    "jobs" => {
                        job_ids.insert(k.to_vec());
                    }
                    "audit" => {
                        seqs.insert(k.to_vec());
                    }
                    _ => {}
                }
                Ok(())
            })?;
            report.trees.push((tree, n, decode.is_some()));
            report.problems.extend(problems);
        }
        Ok(())
    })?;
    Ok(report)
}

/// The first seq an audit index block marks that has no stored event (`None`: all
/// there, or not a block key).
fn audit_bits_without_events(k: &[u8], v: &[u8], seqs: &HashSet<Vec<u8>>) -> Option<u64> {
    let block = audit_keys::block_of(k)?;
    let entry = codec::decode::<audit::Entry>(v).ok()?;
    audit_keys::Bits::from_entry(&entry)
        .seqs(block)
        .find(|seq| !seqs.contains(seq.to_be_bytes().as_slice()))
}

fn hex(k: &[u8]) -> String {
    if k.iter().all(|b| b.is_ascii_graphic()) {
        return String::from_utf8_lossy(k).to_string();
    }
    hex::encode(k)
}

fn parse(ts: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(ts).ok().map(|t| t.to_utc())
}

fn ends<T: Record + DeserializeOwned>(
    store: &Store,
    tree: &str,
    at: impl Fn(&[u8], &T) -> Option<DateTime<Utc>>,
) -> Result<Span, StoreError> {
    let t = store.table::<T>(tree)?;
    let first = t.first()?.and_then(|(k, v)| at(&k, &v));
    let last = t.last()?.and_then(|(k, v)| at(&k, &v));
    Ok((first, last))
}

/// Oldest and newest record time of each tree that has times (keys in time order).
pub(crate) fn tree_times(store: &Store) -> Result<BTreeMap<&'static str, Span>, StoreError> {
    let mut out = BTreeMap::new();
    out.insert(
        "jobs",
        ends::<Job>(store, "jobs", |_, j| Some(time(j.created_at)))?,
    );
    out.insert("audit", ends::<Event>(store, "audit", |_, e| parse(&e.ts))?);
    out.insert(
        "alerts",
        ends::<Alert>(store, "alerts", |_, a| parse(&a.fired_at))?,
    );
    out.insert(
        "slo_minutes",
        ends::<Minute>(store, "slo_minutes", |k, _| {
            let m = u64::from_be_bytes(k.try_into().ok()?);
            DateTime::from_timestamp(i64::try_from(m).ok()? * 60, 0)
        })?,
    );
    // Keyed by name: a small tree, read whole.
    let mut times: Vec<DateTime<Utc>> = Vec::new();
    for r in store.table::<Schedule>("schedules")?.iter() {
        times.push(time(r?.1.created_at));
    }
    out.insert(
        "schedules",
        (times.iter().min().copied(), times.iter().max().copied()),
    );
    Ok(out)
}
