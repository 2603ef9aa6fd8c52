//! Ids from several ranges of one index tree, merged into id order: a list filtered by
//! status, queue or kind reads the `jobs_status` ranges of exactly the (status, queue,
//! kind) triples that match, so a page costs its own size, however many jobs match
//! nothing. Ids are UUIDv7, so id order is creation order.

use std::iter::Peekable;

use super::job_keys::tail_id;
use super::jobs_index::Marker;
use crate::store::{StoreError, Table};

type Ids = Peekable<Box<dyn Iterator<Item = Result<[u8; 16], StoreError>>>>;

pub(super) struct Merged {
    parts: Vec<Ids>,
    newest_first: bool,
}

/// The ids under each of `prefixes` in `tree`, below `upper` when given, merged: newest
/// (highest id) first, or oldest first.
pub(super) fn merged(
    tree: &Table<Marker>,
    prefixes: &[Vec<u8>],
    upper: Option<[u8; 16]>,
    newest_first: bool,
) -> Merged {
    let parts = prefixes
        .iter()
        .map(|p| {
            let mut lo = p.clone();
            lo.extend_from_slice(&[0; 16]);
            let mut hi = p.clone();
            match upper {
                Some(id) => hi.extend_from_slice(&id),
                None => hi.extend_from_slice(&[0xff; 17]),
            }
            let range = tree.range(lo..hi);
            let ids = move |r: Result<(Vec<u8>, Marker), StoreError>| {
                r.map(|(k, _)| tail_id(&k).unwrap_or([0; 16]))
            };
            let it: Box<dyn Iterator<Item = Result<[u8; 16], StoreError>>> = if newest_first {
                Box::new(range.rev().map(ids))
            } else {
                Box::new(range.map(ids))
            };
            it.peekable()
        })
        .collect();
    Merged {
        parts,
        newest_first,
    }
}

impl Iterator for Merged {
    type Item = Result<[u8; 16], StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut best: Option<(usize, [u8; 16])> = None;
        for (i, p) in self.parts.iter_mut().enumerate() {
            match p.peek() {
                None => {}
                Some(Err(_)) => return p.next(),
                Some(Ok(id)) => {
                    let better =
                        best.is_none_or(|(_, b)| if self.newest_first { *id > b } else { *id < b });
                    if better {
                        best = Some((i, *id));
                    }
                }
            }
        }
        let (i, _) = best?;
        self.parts[i].next()
    }
}
