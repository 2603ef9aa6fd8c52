//! New jobs on sled: the index entries of a stored job, and a batch stored as one change.

use super::super::job_keys::id_bytes;
use super::{SledJobs, lock};
use crate::jobs::store::Inserted;
use crate::jobs::{Job, JobError};
use crate::store::Commit;

impl SledJobs {
    /// Unique keys first (a key a crash leaves pointing at no record is taken over by
    /// the next job with that key), then every new record with its index entries and
    /// counts in one atomic write: a crash keeps all of them or none.
    pub(super) fn insert_many(&self, jobs: &[Job]) -> Result<(Vec<Inserted>, Commit), JobError> {
        let mut out = Vec::with_capacity(jobs.len());
        let mut new = Vec::with_capacity(jobs.len());
        for job in jobs {
            let id = id_bytes(&job.id)?;
            if let Some(u) = &job.unique_key
                && let Some(existing) = self.take_unique(u, job)?
            {
                out.push(Inserted::Duplicate(existing));
                continue;
            }
            new.push((out.len(), id, job));
            out.push(Inserted::New(job.clone()));
        }
        let mut counts = lock(&self.counts);
        let mut changes = Vec::with_capacity(new.len());
        for (at, id, job) in &new {
            if let Some(existing) = self.t.jobs.get(id)? {
                // A caller-chosen id already stored: that entry is a duplicate.
                out[*at] = Inserted::Duplicate(existing);
                continue;
            }
            changes.push((id, None, Some(*job)));
        }
        if !changes.is_empty() {
            self.t.write(&mut counts, &changes)?;
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
    use crate::jobs::{NewJob, Status, transitions};

    fn queued(jobs: &SledJobs) -> u64 {
        jobs.counts()
            .iter()
            .filter(|((_, _, s), _)| *s == Status::Queued)
            .map(|(_, n)| n)
            .sum()
    }
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
        assert_eq!(queued(&jobs), 3);
        let (claimed, _) = jobs
            .claim(&[], &["other".into()], 10, &mut |j| {
                transitions::claimed(j, "w", 10, 1)
            })
            .unwrap();
        assert_eq!(claimed.len(), 1);
        assert_eq!(queued(&jobs), 2);
        // The same ids again are duplicates, nothing is written twice.
        let (again, _) = jobs.insert_batch(&batch[..1]).unwrap();
        assert!(matches!(&again[0], Inserted::Duplicate(_)));
        assert_eq!(queued(&jobs), 2);
    }
}
