//! The byte keys of the job store's trees (see `jobs` for what each tree holds).

use crate::jobs::{Job, JobError, Status};

/// The status's place in [`Status::ALL`]: its byte in keys.
pub(super) fn status_byte(status: Status) -> u8 {
    Status::ALL.iter().position(|s| *s == status).unwrap_or(0) as u8
}

/// The `jobs_status` prefix of one (status, queue, kind).
pub(super) fn status_prefix(status: Status, queue: &str, kind: &str) -> Vec<u8> {
    let mut k = vec![status_byte(status)];
    k.extend_from_slice(&pair_prefix(queue, kind));
    k
}

/// The `jobs_status` key: status, queue, kind, then the id.
pub(super) fn status_key(j: &Job, id: &[u8; 16]) -> Vec<u8> {
    let mut k = status_prefix(j.status, &j.queue, &j.kind);
    k.extend_from_slice(id);
    k
}

/// The `jobs_counts` key of one (queue, kind, status).
pub(super) fn count_key(queue: &str, kind: &str, status: Status) -> Vec<u8> {
    let mut k = pair_prefix(queue, kind);
    k.push(status_byte(status));
    k
}

/// The (queue, kind, status) of a `jobs_counts` key.
pub(super) fn parse_count_key(k: &[u8]) -> Option<(String, String, Status)> {
    let (&s, rest) = k.split_last()?;
    let mut parts = rest.split(|b| *b == 0);
    let queue = std::str::from_utf8(parts.next()?).ok()?;
    let kind = std::str::from_utf8(parts.next()?).ok()?;
    let status = *Status::ALL.get(usize::from(s))?;
    Some((queue.to_string(), kind.to_string(), status))
}

pub(super) fn id_bytes(id: &str) -> Result<[u8; 16], JobError> {
    uuid::Uuid::parse_str(id)
        .map(|u| *u.as_bytes())
        .map_err(|_| JobError::NotFound(id.to_string()))
}

/// The id at the end of an index key.
pub(super) fn tail_id(key: &[u8]) -> Option<[u8; 16]> {
    key.get(key.len().checked_sub(16)?..)?.try_into().ok()
}

/// i64 → bytes that sort in numeric order.
pub(super) fn ord_i64(v: i64) -> [u8; 8] {
    ((v as u64) ^ (1 << 63)).to_be_bytes()
}

/// The inverse of [`ord_i64`].
pub(super) fn from_ord_i64(b: [u8; 8]) -> i64 {
    (u64::from_be_bytes(b) ^ (1 << 63)) as i64
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

/// A time (ms), then the id: `jobs_sched` (run_at), `jobs_running` (lease end) and
/// `jobs_finished` (finished_at).
pub(super) fn time_key(t: i64, id: &[u8; 16]) -> Vec<u8> {
    let mut k = Vec::with_capacity(24);
    k.extend_from_slice(&ord_i64(t));
    k.extend_from_slice(id);
    k
}

/// The first key after every `time_key(t, _)`.
pub(super) fn after_time(t: i64) -> Vec<u8> {
    let mut k = ord_i64(t).to_vec();
    k.extend_from_slice(&[0xff; 17]);
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
        assert_eq!(from_ord_i64(ord_i64(-42)), -42);
        assert!(time_key(7, &[0xff; 16]) < after_time(7));
        assert!(after_time(7) < time_key(8, &[0; 16]));
    }

    #[test]
    fn count_keys_read_back() {
        let k = count_key("payments", "email.send", Status::Dead);
        assert_eq!(
            parse_count_key(&k),
            Some(("payments".into(), "email.send".into(), Status::Dead))
        );
    }
}
