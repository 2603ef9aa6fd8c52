//! The byte keys of the job store's trees (see `jobs` for what each tree holds).

use crate::jobs::{Job, JobError, Status};

/// The `jobs_status` key: the status's place in [`Status::ALL`], then the id.
pub(super) fn status_key(status: Status, id: &[u8; 16]) -> [u8; 17] {
    let mut k = [0u8; 17];
    k[0] = Status::ALL.iter().position(|s| *s == status).unwrap_or(0) as u8;
    k[1..].copy_from_slice(id);
    k
}

pub(super) fn id_bytes(id: &str) -> Result<[u8; 16], JobError> {
    uuid::Uuid::parse_str(id)
        .map(|u| *u.as_bytes())
        .map_err(|_| JobError::NotFound(id.to_string()))
}

/// i64 → bytes that sort in numeric order.
pub(super) fn ord_i64(v: i64) -> [u8; 8] {
    ((v as u64) ^ (1 << 63)).to_be_bytes()
}

/// Higher priority sorts first.
pub(super) fn ord_priority(p: i32) -> [u8; 4] {
    (!((p as u32) ^ 0x8000_0000)).to_be_bytes()
}

pub(super) fn pair_prefix(queue: &str, kind: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(queue.len() + kind.len() + 2);
    k.extend_from_slice(queue.as_bytes());
    k.push(0);
    k.extend_from_slice(kind.as_bytes());
    k.push(0);
    k
}

pub(super) fn ready_key(j: &Job, id: &[u8; 16]) -> Vec<u8> {
    let mut k = pair_prefix(&j.queue, &j.kind);
    k.extend_from_slice(&ord_priority(j.priority));
    k.extend_from_slice(&ord_i64(j.run_at));
    k.extend_from_slice(id);
    k
}

pub(super) fn sched_key(run_at: i64, id: &[u8; 16]) -> Vec<u8> {
    let mut k = Vec::with_capacity(24);
    k.extend_from_slice(&ord_i64(run_at));
    k.extend_from_slice(id);
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_orders() {
        assert!(ord_priority(10) < ord_priority(0));
        assert!(ord_priority(0) < ord_priority(-5));
        assert!(ord_priority(i32::MAX) < ord_priority(i32::MIN));
        assert!(ord_i64(-1) < ord_i64(0));
        assert!(ord_i64(5) < ord_i64(1_000_000));
    }
}
