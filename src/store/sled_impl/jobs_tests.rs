//! The job store's indexes against its records: after mixed transitions, after a
//! restart, after pruning, for a home from before the indexes, and filtered lists
//! against a plain scan.

use std::sync::Arc;

use chrono::{Duration, TimeZone, Utc};

use super::jobs::SledJobs;
use crate::clock::Clock;
use crate::jobs::{ClaimRequest, Filter, Job, JobStore, Jobs, NewJob, Reporter, Status};
use crate::store::{Store, Table};

/// A small deterministic generator for the random walk.
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

const QUEUES: [&str; 3] = ["default", "payments", "mail"];
const KINDS: [&str; 4] = ["a", "b.c", "d:e", "f-g"];

fn open(dir: &std::path::Path) -> (Store, Arc<SledJobs>) {
    let store = Store::open(dir).unwrap();
    let jobs = Arc::new(SledJobs::open(&store).unwrap());
    (store, jobs)
}

/// [`open`], with the queue over it on a manual clock at 2026-03-01.
fn open_queue(dir: &std::path::Path) -> (Store, Arc<SledJobs>, Clock, Jobs) {
    let (store, sled) = open(dir);
    let clock = Clock::manual(Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap());
    let (jobs, _) = Jobs::open(sled.clone(), clock.clone()).unwrap();
    (store, sled, clock, jobs)
}

/// Every job record, oldest id first.
fn records(store: &Store) -> Vec<Job> {
    let t: Table<Job> = store.table("jobs").unwrap();
    t.iter().map(|r| r.unwrap().1).collect()
}

/// A random walk over the queue's transitions.
fn walk(jobs: &Jobs, clock: &Clock, n: usize, rng: &mut Rng) {
    let mut ids: Vec<String> = Vec::new();
    for i in 0..n {
        let new = NewJob {
            queue: Some(QUEUES[rng.below(3) as usize].into()),
            kind: KINDS[rng.below(4) as usize].into(),
            priority: Some(rng.below(3) as i32 - 1),
            max_attempts: Some(1 + rng.below(3) as u32),
            delay_secs: (rng.below(10) == 0).then(|| rng.below(600)),
            unique_key: (rng.below(20) == 0).then(|| format!("u{}", rng.below(30))),
            ..NewJob::default()
        };
        let (e, _) = jobs.enqueue(new).unwrap();
        ids.push(e.job.id);
        for _ in 0..2 {
            let id = ids[rng.below(ids.len() as u64) as usize].clone();
            let _ = match rng.below(9) {
                0 | 1 => jobs
                    .claim(&ClaimRequest {
                        queues: match rng.below(3) {
                            0 => vec![],
                            q => vec![QUEUES[q as usize].into()],
                        },
                        kinds: vec![],
                        worker: "w".into(),
                        lease_secs: 1 + rng.below(120),
                        count: 1 + rng.below(4) as usize,
                    })
                    .map(|_| ()),
                2 => jobs
                    .complete(&id, Reporter::Internal(None), Some("{}".into()))
                    .map(|_| ()),
                3 => jobs.fail(&id, Reporter::Internal(None), "boom").map(|_| ()),
                4 => jobs.cancel(&id).map(|_| ()),
                5 => jobs.retry(&id).map(|_| ()),
                6 => jobs
                    .heartbeat(&id, Reporter::Internal(None), 1 + rng.below(60))
                    .map(|_| ()),
                7 => jobs.mark_stuck().map(|_| ()),
                _ => jobs.requeue_stuck(30).map(|_| ()),
            };
        }
        clock.advance(Duration::milliseconds(rng.below(5_000) as i64));
        if i % 500 == 499 {
            let _ = jobs.prune(1).unwrap();
            clock.advance(Duration::hours(7));
        }
    }
}

fn filters() -> Vec<Filter> {
    let mut out = vec![
        Filter::default(),
        Filter {
            failed: true,
            ..Filter::default()
        },
        Filter {
            queue: Some("nowhere".into()),
            ..Filter::default()
        },
    ];
    for s in Status::ALL {
        out.push(Filter::status(s));
        out.push(Filter {
            status: Some(s),
            queue: Some("payments".into()),
            ..Filter::default()
        });
        out.push(Filter {
            status: Some(s),
            queue: Some("mail".into()),
            kind: Some("d:e".into()),
            ..Filter::default()
        });
    }
    for q in QUEUES {
        out.push(Filter {
            queue: Some(q.into()),
            ..Filter::default()
        });
        out.push(Filter {
            queue: Some(q.into()),
            kind: Some("a".into()),
            ..Filter::default()
        });
    }
    for k in KINDS {
        out.push(Filter {
            kind: Some(k.into()),
            failed: true,
            ..Filter::default()
        });
    }
    out
}

/// Lists, paged through their cursors, and ids give what a scan of the records gives.
fn assert_filters_match_a_scan(store: &Store, jobs: &SledJobs) {
    let all = records(store);
    for f in filters() {
        let want: Vec<String> = all
            .iter()
            .filter(|j| f.matches(j))
            .map(|j| j.id.clone())
            .collect();
        let mut got = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let (page, next) = jobs.list(&f, cursor.as_deref(), 7).unwrap();
            assert!(page.len() <= 7);
            got.extend(page.into_iter().map(|j| j.id));
            match next {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        let newest_first: Vec<String> = want.iter().rev().cloned().collect();
        assert_eq!(got, newest_first, "list {f:?}");
        assert_eq!(jobs.ids(&f, usize::MAX).unwrap(), want, "ids {f:?}");
        let first = want.iter().take(3).cloned().collect::<Vec<_>>();
        assert_eq!(jobs.ids(&f, 3).unwrap(), first, "ids {f:?} limit 3");
    }
}

#[test]
fn indexes_and_filters_agree_with_the_records_after_a_random_walk_and_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (store, sled, clock, jobs) = open_queue(dir.path());
    jobs.set_jitter(Some(0));
    walk(&jobs, &clock, 3000, &mut Rng(0x1234_5678));

    assert_eq!(sled.disagreements(), Vec::<String>::new());
    let all = records(&store);
    let statuses: std::collections::BTreeSet<Status> = all.iter().map(|j| j.status).collect();
    assert!(
        statuses.len() >= 6,
        "a walk that reached few statuses: {statuses:?}"
    );
    assert_filters_match_a_scan(&store, &sled);

    // A restart reads the stored indexes and counts; they still agree.
    let counts = sled.counts();
    drop((jobs, sled));
    let reopened = SledJobs::open(&store).unwrap();
    assert_eq!(reopened.counts(), counts);
    assert_eq!(reopened.disagreements(), Vec::<String>::new());
    assert_filters_match_a_scan(&store, &reopened);
}

#[test]
fn pruning_removes_exactly_the_finished_jobs_that_are_due() {
    let dir = tempfile::tempdir().unwrap();
    let (store, sled, clock, jobs) = open_queue(dir.path());
    walk(&jobs, &clock, 400, &mut Rng(99));
    let all = records(&store);
    // Half of the finished jobs finished before this.
    let mut finished: Vec<i64> = all
        .iter()
        .filter(|j| j.status.is_finished())
        .filter_map(|j| j.finished_at)
        .collect();
    finished.sort();
    let before_ms = finished[finished.len() / 2];
    let due: Vec<&Job> = all
        .iter()
        .filter(|j| j.status.is_finished() && j.finished_at.is_some_and(|f| f < before_ms))
        .collect();
    assert!(!due.is_empty() && due.len() < all.len());
    let (n, _) = sled.prune(before_ms).unwrap();
    assert_eq!(n, due.len());
    let left = records(&store);
    assert_eq!(left.len(), all.len() - due.len());
    assert!(left.iter().all(|j| !due.iter().any(|d| d.id == j.id)));
    assert_eq!(sled.disagreements(), Vec::<String>::new());
    assert_eq!(sled.prune(before_ms).unwrap().0, 0);
}

#[test]
fn a_home_from_before_the_indexes_is_rebuilt_once_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let (store, sled, clock, jobs) = open_queue(dir.path());
    walk(&jobs, &clock, 300, &mut Rng(7));
    let counts = sled.counts();
    drop((jobs, sled));
    // The layout before: no counts, no format mark, other keys in the index trees.
    for tree in [
        "jobs_counts",
        "jobs_status",
        "jobs_running",
        "jobs_finished",
    ] {
        let t: Table<super::jobs_index::Marker> = store.table(tree).unwrap();
        t.clear().unwrap();
    }
    let t: Table<super::jobs_index::Marker> = store.table("jobs_running").unwrap();
    t.insert([7u8; 16], &super::jobs_index::Marker {}).unwrap();
    let reopened = SledJobs::open(&store).unwrap();
    assert_eq!(reopened.counts(), counts);
    assert_eq!(reopened.disagreements(), Vec::<String>::new());
    assert_filters_match_a_scan(&store, &reopened);
}

#[test]
fn api_claims_never_take_the_kinds_the_server_runs() {
    let dir = tempfile::tempdir().unwrap();
    let (_store, _sled, _clock, jobs) = open_queue(dir.path());
    jobs.run_here("payments.reconcile");
    for kind in ["http", "payments.reconcile", "email"] {
        let new = NewJob {
            kind: kind.into(),
            ..NewJob::default()
        };
        let _ = jobs.enqueue(new).unwrap();
    }
    let any = ClaimRequest {
        worker: "w".into(),
        count: 10,
        lease_secs: 60,
        ..ClaimRequest::default()
    };
    let (got, _) = jobs.claim_for_key(&any, "key1").unwrap();
    let kinds: Vec<&str> = got.iter().map(|j| j.kind.as_str()).collect();
    assert_eq!(kinds, ["email"]);
    // Asking for a server kind by name gets nothing either.
    let named = ClaimRequest {
        kinds: vec!["http".into(), "payments.reconcile".into()],
        ..any.clone()
    };
    assert!(jobs.claim_for_key(&named, "key1").unwrap().0.is_empty());
    // The server's own claims still take them.
    let (own, _) = jobs.claim(&named).unwrap();
    assert_eq!(own.len(), 2);
}

#[test]
fn a_restart_marks_stuck_every_builtin_running_job_across_pages_and_keeps_external_leases() {
    let dir = tempfile::tempdir().unwrap();
    let (store, sled, clock, jobs) = open_queue(dir.path());
    // More running jobs than `Jobs::open` reads at a time, the two kinds of worker
    // interleaved by id.
    let n = 1_300;
    for _ in 0..n {
        let _ = jobs.enqueue(NewJob {
            kind: "email".into(),
            ..NewJob::default()
        });
    }
    for i in 0..n {
        let worker = if i % 2 == 0 { "builtin:exec" } else { "ext-1" };
        let (got, _) = jobs
            .claim(&ClaimRequest {
                worker: worker.into(),
                count: 1,
                lease_secs: 600,
                ..ClaimRequest::default()
            })
            .unwrap();
        assert_eq!(got.len(), 1);
    }
    drop(jobs);
    let (jobs, _) = Jobs::open(sled.clone(), clock.clone()).unwrap();
    let all = records(&store);
    assert_eq!(all.len(), n);
    for j in &all {
        let builtin = j.worker.as_deref().unwrap().starts_with("builtin:");
        let want = if builtin {
            Status::Stuck
        } else {
            Status::Running
        };
        assert_eq!(j.status, want, "{} by {:?}", j.id, j.worker);
    }
    assert_eq!(jobs.count(Status::Stuck), (n / 2) as u64);
    assert_eq!(jobs.count(Status::Running), (n / 2) as u64);
    assert_eq!(sled.disagreements(), Vec::<String>::new());
}
