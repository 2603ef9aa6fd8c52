//! New jobs on sled: the index entries of a stored job, and a batch stored as one change.

use super::super::job_keys::{id_bytes, ready_key, sched_key, status_key};
use super::{Marker, SledJobs, lock};
use crate::jobs::store::Inserted;
use crate::jobs::{Job, JobError, Status};
use crate::store::{Commit, StoreError};

impl SledJobs {
    /// The index entries and counts of a job just stored.
    pub(super) fn index_new(&self, job: &Job, id: &[u8; 16]) -> Result<(), StoreError> {
        match job.status {
            Status::Queued => self.ready.insert(ready_key(job, id), &Marker {})?,
            _ => self.sched.insert(sched_key(job.run_at, id), &Marker {})?,
        }
        self.by_status
            .insert(status_key(job.status, id), &Marker {})?;
        {
            let mut pairs = lock(&self.pairs);
            if !pairs.contains(&(job.queue.clone(), job.kind.clone())) {
                pairs.insert((job.queue.clone(), job.kind.clone()));
            }
        }
        self.bump(&job.queue, &job.kind, None, Some(job.status));
        Ok(())
    }

    /// Unique keys first (a key a crash leaves pointing at no record is taken over by
    /// the next job with that key), then every new record in one atomic sled batch (a
    /// crash keeps all of them or none), then their index entries (rebuilt from the
    /// records at open).
    pub(super) fn insert_many(&self, jobs: &[Job]) -> Result<(Vec<Inserted>, Commit), JobError> {
        let mut out = Vec::with_capacity(jobs.len());
        let mut puts = Vec::with_capacity(jobs.len());
        for job in jobs {
            let id = id_bytes(&job.id)?;
            if let Some(u) = &job.unique_key
                && let Some(existing) = self.take_unique(u, job)?
            {
                out.push(Inserted::Duplicate(existing));
                continue;
            }
            if let Some(existing) = self.jobs.get(id)? {
                out.push(Inserted::Duplicate(existing));
                continue;
            }
            puts.push((id.to_vec(), job.clone()));
            out.push(Inserted::New(job.clone()));
        }
        if !puts.is_empty() {
            self.jobs.apply(&puts, &[])?;
        }
        for (id, job) in &puts {
            let id: [u8; 16] = id.as_slice().try_into().unwrap_or_default();
            self.index_new(job, &id)?;
        }
        // Also when all were duplicates: their holders may have been written a moment
        // ago by another request, and the answer waits for them too.
        Ok((out, self.store.pending()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::store::JobStore;
    use crate::jobs::{NewJob, transitions};
    use crate::store::Store;

    fn job(kind: &str, unique: Option<&str>) -> Job {
        let new = NewJob {
            kind: kind.into(),
            unique_key: unique.map(str::to_string),
            ..NewJob::default()
        };
        transitions::new_job(new, uuid::Uuid::now_v7().to_string(), 0).unwrap()
    }

    #[test]
    fn a_batch_is_indexed_counted_and_honours_held_keys() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let jobs = SledJobs::open(&store).unwrap();
        let held = job("k", Some("u1"));
        let _ = jobs.insert(&held).unwrap();
        let batch = [
            job("k", None),
            job("k", Some("u1")),
            job("other", Some("u2")),
        ];
        let (out, _) = jobs.insert_batch(&batch).unwrap();
        assert!(matches!(&out[0], Inserted::New(j) if j.id == batch[0].id));
        assert!(matches!(&out[1], Inserted::Duplicate(j) if j.id == held.id));
        assert!(matches!(&out[2], Inserted::New(j) if j.id == batch[2].id));
        assert!(jobs.get(&batch[1].id).unwrap().is_none());
        assert_eq!(jobs.count(Status::Queued), 3);
        let (claimed, _) = jobs
            .claim(&[], &["other".into()], 10, &mut |j| {
                transitions::claimed(j, "w", 10, 1)
            })
            .unwrap();
        assert_eq!(claimed.len(), 1);
        assert_eq!(jobs.count(Status::Queued), 2);
        // The same ids again are duplicates, nothing is written twice.
        let (again, _) = jobs.insert_batch(&batch[..1]).unwrap();
        assert!(matches!(&again[0], Inserted::Duplicate(_)));
        assert_eq!(jobs.count(Status::Queued), 2);
    }
}
