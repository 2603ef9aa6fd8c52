//! `echopilot bench --seed-jobs N --seed-audit N --home DIR`: a big home, built through
//! the store's own write paths (the job queue's transitions, the audit chain) so the
//! indexes, counts and hash chain are exactly what a server would have written.
//!
//! Jobs are spread over the last 20 days (a manual clock) across several queues and
//! kinds: about 55 % succeeded, 8 % dead, 5 % failed and backing off, 3 % cancelled,
//! 2 % delayed, 2 % running (long leases), 1 % stuck, the rest queued. Audit events span
//! the same 20 days: mixed actions, actors, roles and addresses, about 4 % failures.
//! Nothing is synced until the end (one checkpoint), so it runs at the store's speed.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use chrono::{Duration, Utc};

use crate::audit::{Audit, NewEvent};
use crate::auth::{Caller, Role};
use crate::clock::Clock;
use crate::jobs::{ClaimRequest, Jobs, NewJob};
use crate::store::Store;
use crate::store::sled_impl::audit::SledAudit;
use crate::store::sled_impl::jobs::SledJobs;

/// What to build.
#[derive(Debug, Clone)]
pub(crate) struct SeedOptions {
    pub home: PathBuf,
    pub jobs: usize,
    pub audit: usize,
}

const QUEUES: [&str; 4] = ["default", "payments", "notifications", "reports"];
const KINDS: [&str; 6] = [
    "email.send_receipt",
    "report.daily_digest",
    "crm.sync_contacts",
    "webhook.deliver",
    "invoice.render",
    "http",
];
const DAYS: i64 = 20;
const AUDIT_BATCH: usize = 500;

/// A small deterministic generator (splitmix64): the same N gives the same home.
struct Mix(u64);

impl Mix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Build the home; the server must not be running on it.
pub(crate) async fn run(opts: SeedOptions) -> anyhow::Result<()> {
    std::fs::create_dir_all(&opts.home)
        .with_context(|| format!("while creating {}", opts.home.display()))?;
    let store = Store::open_bulk(&opts.home).context("while opening the store")?;
    let started = Instant::now();
    if opts.jobs > 0 {
        seed_jobs(&store, opts.jobs)?;
        println!(
            "jobs: {} in {:.1} s",
            opts.jobs,
            started.elapsed().as_secs_f64()
        );
    }
    if opts.audit > 0 {
        let t = Instant::now();
        let last = seed_audit(&store, &opts.home, opts.audit).await?;
        println!(
            "audit: {} events (last seq {last}) in {:.1} s",
            opts.audit,
            t.elapsed().as_secs_f64()
        );
    }
    store.checkpoint()?;
    println!(
        "seeded {} in {:.1} s; store {:.0} MiB",
        opts.home.display(),
        started.elapsed().as_secs_f64(),
        store.size_on_disk() as f64 / (1024.0 * 1024.0)
    );
    Ok(())
}

fn seed_jobs(store: &Store, n: usize) -> anyhow::Result<()> {
    let span = Duration::days(DAYS);
    let clock = Clock::manual(Utc::now() - span);
    let step = span / i32::try_from(n.max(1)).unwrap_or(i32::MAX);
    let (jobs, _) = Jobs::open(Arc::new(SledJobs::open(store)?), clock.clone())?;
    let mut mix = Mix(n as u64);
    for i in 0..n {
        clock.advance(step);
        if i % 50_000 == 49_999 {
            // The 1-second leases have run out by now: those jobs become stuck.
            let _ = jobs.mark_stuck()?;
            println!("  jobs: {} ...", i + 1);
        }
        let queue = QUEUES[mix.below(QUEUES.len() as u64) as usize];
        let kind = KINDS[mix.below(KINDS.len() as u64) as usize];
        let fate = mix.below(100);
        let delayed = (71..73).contains(&fate);
        // Jobs that go on to be claimed rank first, so the claim below takes this one.
        let claimed = !delayed && fate < 76;
        let _ = jobs.enqueue(NewJob {
            queue: Some(queue.into()),
            kind: kind.into(),
            payload: Some(format!(
                "{{\"n\":{i},\"to\":\"customer-{}@example.com\"}}",
                mix.below(50_000)
            )),
            priority: Some(if claimed { 5 } else { 0 }),
            max_attempts: Some(if (63..68).contains(&fate) { 5 } else { 1 }),
            delay_secs: delayed.then(|| 86_400 * (DAYS as u64 + 1 + mix.below(7))),
            ..NewJob::default()
        })?;
        if !claimed {
            continue;
        }
        let lease_secs = match fate {
            73..75 => 86_400 * (DAYS as u64 + 30),
            75 => 1,
            _ => 300,
        };
        let (got, _) = jobs.claim(&ClaimRequest {
            queues: vec![queue.into()],
            kinds: vec![kind.into()],
            worker: format!("seed-worker-{}", mix.below(8)),
            lease_secs,
            count: 1,
        })?;
        let Some(job) = got.into_iter().next() else {
            continue;
        };
        let id = job.id.as_str();
        let worker = job.worker.as_deref();
        let _ = match fate {
            0..55 => jobs.complete(id, worker, Some(format!("{{\"n\":{i}}}")))?,
            55..68 => jobs.fail(id, worker, "seeded failure: upstream answered 502")?,
            68..71 => jobs.cancel(id)?,
            _ => continue,
        };
    }
    let _ = jobs.mark_stuck()?;
    for (queue, per) in jobs.counts() {
        let line: Vec<String> = per.iter().map(|(s, n)| format!("{s} {n}")).collect();
        println!("  {queue}: {}", line.join(", "));
    }
    Ok(())
}

async fn seed_audit(store: &Store, home: &std::path::Path, n: usize) -> anyhow::Result<u64> {
    const ACTIONS: [(&str, u16); 10] = [
        ("job.create", 201),
        ("job.claim", 200),
        ("job.complete", 200),
        ("job.fail", 200),
        ("job.retry", 200),
        ("job.cancel", 200),
        ("schedule.run_now", 200),
        ("flag.set", 200),
        ("backup.create", 201),
        ("payment.webhook", 200),
    ];
    const FAILURES: [(&str, u16, &str); 4] = [
        ("auth.failed", 401, "invalid X-Dash-Key"),
        ("rate_limit_exceeded", 429, "Rate limit exceeded"),
        ("job.retry", 409, "job is running"),
        ("auth.forbidden", 403, "this key's role may not do this"),
    ];
    const CLIENT_HOSTS: u64 = 16;
    const ACTORS: [(&str, Role); 5] = [
        ("k-3f9a1c", Role::Operator),
        ("k-77b0de", Role::Admin),
        ("k-a1c2e3", Role::Worker),
        ("k-5d6e7f", Role::Viewer),
        ("k-0b1c2d", Role::Operator),
    ];
    let span = Duration::days(DAYS);
    let clock = Clock::manual(Utc::now() - span);
    let batches = n.div_ceil(AUDIT_BATCH).max(1);
    let step = span / i32::try_from(batches).unwrap_or(i32::MAX);
    let audit = Audit::open(
        Arc::new(SledAudit::open(store)?),
        &home.join("logs"),
        clock.clone(),
    )?;
    let mut mix = Mix(0x5eed ^ n as u64);
    let mut last = 0;
    let mut done = 0;
    while done < n {
        let k = AUDIT_BATCH.min(n - done);
        let batch: Vec<NewEvent> = (0..k)
            .map(|_| {
                // Callers come from a few hosts; refused requests from anywhere.
                let failure = mix.below(100) < 4;
                let ip = Some(if failure {
                    format!(
                        "10.{}.{}.{}",
                        mix.below(4),
                        mix.below(256),
                        1 + mix.below(254)
                    )
                } else {
                    format!("10.0.0.{}", 1 + mix.below(CLIENT_HOSTS))
                });
                let request_id = Some(format!(
                    "{:032x}",
                    u128::from(mix.next()) << 64 | u128::from(mix.next())
                ));
                if failure {
                    let (action, status, error) =
                        FAILURES[mix.below(FAILURES.len() as u64) as usize];
                    // Most failures come from callers without a valid key.
                    let actor = (status != 401).then(|| {
                        let (key_id, role) = ACTORS[mix.below(ACTORS.len() as u64) as usize];
                        Caller {
                            key_id: key_id.into(),
                            role,
                        }
                    });
                    NewEvent {
                        request_id,
                        actor,
                        action: action.into(),
                        target: "POST /api/jobs".into(),
                        ip,
                        ok: false,
                        status,
                        error: Some(error.into()),
                        actor_id: (status == 401).then(|| format!("k-{:06x}", mix.below(1 << 24))),
                    }
                } else {
                    let (action, status) = ACTIONS[mix.below(ACTIONS.len() as u64) as usize];
                    let (key_id, role) = ACTORS[mix.below(ACTORS.len() as u64) as usize];
                    NewEvent {
                        request_id,
                        actor: Some(Caller {
                            key_id: key_id.into(),
                            role,
                        }),
                        action: action.into(),
                        target: format!("job:{:08x}", mix.below(1 << 32)),
                        ip,
                        ok: true,
                        status,
                        error: None,
                        actor_id: None,
                    }
                }
            })
            .collect();
        last = audit.record_all(&batch).await?;
        done += k;
        clock.advance(step);
        if done % 100_000 < AUDIT_BATCH && done >= 100_000 {
            println!("  audit: {done} ...");
        }
    }
    audit.flush().await?;
    Ok(last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::Status;

    #[tokio::test]
    async fn a_seeded_home_has_every_status_and_an_intact_chain() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().to_path_buf();
        run(SeedOptions {
            home: home.clone(),
            jobs: 3000,
            audit: 1200,
        })
        .await
        .unwrap();

        let store = Store::open(&home).unwrap();
        let (jobs, _) =
            Jobs::open(Arc::new(SledJobs::open(&store).unwrap()), Clock::system()).unwrap();
        let counts = jobs.counts();
        assert_eq!(counts.len(), QUEUES.len(), "{counts:?}");
        let total: u64 = counts.values().flat_map(|m| m.values()).sum();
        assert_eq!(total, 3000);
        for s in [
            Status::Queued,
            Status::Running,
            Status::Succeeded,
            Status::Dead,
            Status::Scheduled,
            Status::Cancelled,
            Status::Stuck,
        ] {
            assert!(jobs.count(s) > 0, "no {s} job in {counts:?}");
        }

        let audit = Audit::open_for_verify(
            Arc::new(SledAudit::open(&store).unwrap()),
            &home.join("logs"),
        )
        .unwrap();
        let report = crate::audit::verify(&home.join("logs"), Some(&audit)).unwrap();
        assert_eq!(report.store_events, Some(1200));
        assert_eq!(report.file_events, 1200);
        let failures = audit
            .query(&crate::audit::Filter {
                ok: Some(false),
                limit: 1000,
                ..Default::default()
            })
            .unwrap()
            .0;
        assert!(
            !failures.is_empty() && failures.len() < 200,
            "{}",
            failures.len()
        );
    }
}
