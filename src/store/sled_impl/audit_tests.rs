//! The audit index against the events: filtered queries, paged through their cursors,
//! give what reading every event gives; a home from before the index is indexed at open.

use std::sync::Arc;

use super::audit::SledAudit;
use crate::audit::store::AuditStore;
use crate::audit::{Audit, Event, Filter, chain};
use crate::store::{Store, Table};

struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

const ACTIONS: [&str; 4] = ["job.create", "auth.failed", "flag.set", "job.retry"];
const ACTORS: [&str; 3] = ["anonymous", "k-1", "k-2"];

fn ts(secs: u64) -> String {
    crate::clock::rfc3339(chrono::DateTime::from_timestamp(1_770_000_000 + secs as i64, 0).unwrap())
}

/// `n` events from time `t` on (seqs follow time).
fn fill(store: &SledAudit, n: usize, rng: &mut Rng, mut t: u64) {
    for _ in 0..n {
        t += rng.below(3);
        let ok = rng.below(10) != 0;
        let action = ACTIONS[rng.below(4) as usize].to_string();
        let actor = ACTORS[rng.below(3) as usize].to_string();
        let ip = match rng.below(4) {
            0 => String::new(),
            i => format!("10.0.0.{i}"),
        };
        let _ = store
            .append(&mut |seq, prev| {
                let mut e = Event {
                    ts: ts(t),
                    seq: seq + 1,
                    request_id: String::new(),
                    actor: actor.clone(),
                    role: String::new(),
                    action: action.clone(),
                    target: "t".into(),
                    ip: ip.clone(),
                    ok,
                    status: if ok { 200 } else { 401 },
                    error: (!ok).then(String::new),
                    prev_hash: prev.to_string(),
                    hash: String::new(),
                };
                e.hash = chain::hash_event(&e);
                e
            })
            .unwrap();
    }
}

fn filters() -> Vec<Filter> {
    let mut out = Vec::new();
    for ok in [None, Some(false), Some(true)] {
        for action in [None, Some("auth.failed"), Some("flag.set"), Some("nothing")] {
            for actor in [None, Some("k-1"), Some("anonymous")] {
                for (since, until) in [
                    (None, None),
                    (Some(100), None),
                    (None, Some(900)),
                    (Some(500), Some(520)),
                    (Some(9_999_999), None),
                ] {
                    out.push(Filter {
                        ok,
                        action: action.map(String::from),
                        actor: actor.map(String::from),
                        since: since.map(ts),
                        until: until.map(ts),
                        ..Filter::default()
                    });
                }
            }
        }
    }
    out
}

fn assert_queries_match_a_scan(audit: &Audit, all: &[Event]) {
    for f in filters() {
        let want: Vec<u64> = all
            .iter()
            .rev()
            .filter(|e| f.matches(e))
            .map(|e| e.seq)
            .collect();
        let mut got = Vec::new();
        let mut before = None;
        loop {
            let page = Filter {
                before,
                limit: 13,
                ..f.clone()
            };
            let (events, next) = audit.query(&page).unwrap();
            got.extend(events.iter().map(|e| e.seq));
            match next {
                Some(c) => before = Some(c),
                None => break,
            }
        }
        assert_eq!(got, want, "{f:?}");
    }
}

/// A fresh store with `n` events.
fn filled(n: usize, seed: u64) -> (tempfile::TempDir, Store, SledAudit) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let sled = SledAudit::open(&store).unwrap();
    fill(&sled, n, &mut Rng(seed), 0);
    (dir, store, sled)
}

#[test]
fn filtered_queries_agree_with_a_scan_and_survive_a_reopen() {
    // Not a multiple of the block size: the newest block is still pending in memory.
    let (dir, store, sled) = filled(2500, 0xfeed);
    let all: Vec<Event> = sled.since_seq(0).map(Result::unwrap).collect();
    assert_eq!(all.len(), 2500);
    let audit = Audit::open_for_verify(Arc::new(sled), &dir.path().join("logs")).unwrap();
    assert_queries_match_a_scan(&audit, &all);

    // Reopened, the pending block is read again from its events; appends carry on
    // across block boundaries.
    drop(audit);
    let reopened = SledAudit::open(&store).unwrap();
    fill(&reopened, 700, &mut Rng(0xbeef), 6000);
    let all: Vec<Event> = reopened.since_seq(0).map(Result::unwrap).collect();
    assert_eq!(all.len(), 3200);
    let audit = Audit::open_for_verify(Arc::new(reopened), &dir.path().join("logs")).unwrap();
    assert_queries_match_a_scan(&audit, &all);

    // One key per condition and full block, not per event.
    let index: Table<super::audit::Entry> = store.table("audit_index").unwrap();
    let blocks = index.len();
    assert!((2..=1 + 3 * 12).contains(&blocks), "{blocks} index keys");

    // A home from before the index: it is built at open.
    drop(audit);
    index.clear().unwrap();
    let reopened = SledAudit::open(&store).unwrap();
    assert_eq!(index.len(), blocks);
    let audit = Audit::open_for_verify(Arc::new(reopened), &dir.path().join("logs")).unwrap();
    assert_queries_match_a_scan(&audit, &all);

    // An index of the first layout (a key per event and condition) is built anew.
    drop(audit);
    index.clear().unwrap();
    let old = super::audit::Entry::words(vec![]);
    for e in &all {
        index
            .insert(
                format!("a{}\0", e.action)
                    .into_bytes()
                    .into_iter()
                    .chain(e.seq.to_be_bytes())
                    .collect::<Vec<u8>>(),
                &old,
            )
            .unwrap();
    }
    index
        .insert(b"\0format", &super::audit::Entry::words(vec![1]))
        .unwrap();
    let reopened = SledAudit::open(&store).unwrap();
    assert_eq!(index.len(), blocks);
    let audit = Audit::open_for_verify(Arc::new(reopened), &dir.path().join("logs")).unwrap();
    assert_queries_match_a_scan(&audit, &all);
}

#[test]
fn the_deep_check_names_an_index_bit_whose_event_is_gone() {
    // Past the first block, so it is written.
    let (_dir, store, _sled) = filled(1100, 0xd00d);
    let report = super::db_maintenance::deep_check(&store).unwrap();
    assert_eq!(report.problems, Vec::<String>::new());
    let events: Table<Event> = store.table("audit").unwrap();
    events.remove(10u64.to_be_bytes()).unwrap();
    let report = super::db_maintenance::deep_check(&store).unwrap();
    assert!(!report.problems.is_empty());
    assert!(
        report.problems.iter().all(|p| p.starts_with("audit_index ")
            && p.ends_with("index entry without its event (seq 10)")),
        "{:?}",
        report.problems
    );
}

#[test]
fn every_line_is_written_once_in_seq_order_whatever_the_chunks() {
    let (dir, _store, sled) = filled(1000, 0x11fe);
    let want: String = sled
        .since_seq(0)
        .map(|e| e.unwrap().to_json_line() + "\n")
        .collect();
    let audit = Audit::open_for_verify(Arc::new(sled), &dir.path().join("logs")).unwrap();
    // Chunks that do not divide the seqs, one chunk, and chunks past the end.
    for chunk in [7, 64, 999, 1000, 5000] {
        let mut out = Vec::new();
        assert_eq!(audit.write_lines_in_chunks(&mut out, chunk).unwrap(), 1000);
        assert_eq!(String::from_utf8(out).unwrap(), want, "chunks of {chunk}");
    }
}
