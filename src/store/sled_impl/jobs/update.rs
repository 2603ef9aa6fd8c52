//! Several jobs changed as one write: a worker's batch of reports.

use std::collections::HashMap;

use super::super::job_keys::id_bytes;
use super::{SledJobs, lock};
use crate::jobs::store::{Change, Updated};
use crate::jobs::{Job, JobError};
use crate::store::Commit;

impl SledJobs {
    /// Every change is applied under the write lock to the job as the entries before it
    /// left it; the changed records go in one atomic write, one per job (its stored form
    /// as the old side, so the indexes and counts move once).
    pub(super) fn update_many(
        &self,
        changes: &mut [(&str, Change<'_>)],
    ) -> Result<(Updated, Commit), JobError> {
        let mut counts = lock(&self.counts);
        let mut out: Updated = Vec::with_capacity(changes.len());
        // Per job: its stored form and its latest one.
        let mut touched: Vec<([u8; 16], Job, Job)> = Vec::new();
        let mut at: HashMap<[u8; 16], usize> = HashMap::new();
        for (id, f) in changes.iter_mut() {
            let key = match id_bytes(id) {
                Ok(k) => k,
                Err(e) => {
                    out.push(Err(e));
                    continue;
                }
            };
            let current = match at.get(&key) {
                Some(&i) => touched[i].2.clone(),
                None => match self.t.jobs.get(key)? {
                    Some(j) => j,
                    None => {
                        out.push(Err(JobError::NotFound(id.to_string())));
                        continue;
                    }
                },
            };
            let new = match f(&current) {
                Ok(j) => j,
                Err(e) => {
                    out.push(Err(e));
                    continue;
                }
            };
            match at.get(&key) {
                Some(&i) => touched[i].2 = new.clone(),
                None => {
                    at.insert(key, touched.len());
                    touched.push((key, current.clone(), new.clone()));
                }
            }
            out.push(Ok((current, new)));
        }
        if touched.is_empty() {
            // Refusals only; what they read may have been written a moment ago.
            return Ok((out, self.store.pending()));
        }
        let writes: Vec<_> = touched
            .iter()
            .map(|(id, old, new)| (id, Some(old), Some(new)))
            .collect();
        self.t.write(&mut counts, &writes)?;
        Ok((out, self.store.pending()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::store::JobStore;
    use crate::jobs::{NewJob, Reporter, Status, transitions};
    use crate::store::Store;

    fn count(jobs: &SledJobs, status: Status) -> u64 {
        jobs.counts()
            .iter()
            .filter(|((_, _, s), _)| *s == status)
            .map(|(_, n)| n)
            .sum()
    }

    #[test]
    fn a_batch_applies_in_order_refuses_alone_and_moves_each_job_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let jobs = SledJobs::open(&store).unwrap();
        for _ in 0..3 {
            let new = NewJob {
                kind: "k".into(),
                ..NewJob::default()
            };
            let j = transitions::new_job(new, uuid::Uuid::now_v7().to_string(), 0);
            let _ = jobs.insert(&j.unwrap()).unwrap();
        }
        let (claimed, _) = jobs
            .claim(&[], &[], 3, &mut |j| transitions::claimed(j, "w", 60, 1))
            .unwrap();
        let [a, b, c] = [0, 1, 2].map(|i| claimed[i].id.clone());
        let by = Reporter::Internal(Some("w"));
        let mut done = |j: &Job| transitions::completed(j, by, None, 2);
        let mut done_again = |j: &Job| transitions::completed(j, by, None, 3);
        let mut wrong = |j: &Job| transitions::completed(j, Reporter::Internal(Some("x")), None, 2);
        let mut beat = |j: &Job| transitions::heartbeat(j, by, 60, 2);
        let mut done_c = |j: &Job| transitions::completed(j, by, None, 4);
        let missing = uuid::Uuid::now_v7().to_string();
        let mut never = |j: &Job| Ok(j.clone());
        let mut changes: Vec<(&str, Change<'_>)> = vec![
            (&a, &mut done),
            // The same job again sees it finished, and is refused.
            (&a, &mut done_again),
            (&b, &mut wrong),
            (&missing, &mut never),
            (&c, &mut beat),
            (&c, &mut done_c),
        ];
        let (out, _) = jobs.update_batch(&mut changes).unwrap();
        assert_eq!(out[0].as_ref().unwrap().1.status, Status::Succeeded);
        assert!(out[1].is_err(), "{:?}", out[1]);
        assert!(out[2].is_err(), "{:?}", out[2]);
        assert!(matches!(out[3], Err(JobError::NotFound(_))));
        let (old_c, new_c) = out[5].as_ref().unwrap();
        assert_eq!(
            old_c.status,
            Status::Running,
            "the second entry sees the first's change"
        );
        assert_eq!(new_c.finished_at, Some(4));
        assert_eq!(jobs.get(&a).unwrap().unwrap().finished_at, Some(2));
        assert_eq!(jobs.get(&b).unwrap().unwrap().status, Status::Running);
        assert_eq!(jobs.get(&c).unwrap().unwrap().status, Status::Succeeded);
        assert_eq!(count(&jobs, Status::Succeeded), 2);
        assert_eq!(count(&jobs, Status::Running), 1);
        assert!(
            jobs.disagreements().is_empty(),
            "{:?}",
            jobs.disagreements()
        );
    }
}
