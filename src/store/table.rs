//! A typed tree: keys are bytes (big-endian ids sort in time order), values are records.

use std::marker::PhantomData;
use std::ops::RangeBounds;
use std::sync::Arc;

use super::capture::Gate;
use super::codec::{self, Record};
use super::journal::Journal;
use super::space::Space;
use super::{AtomicWrite, StoreError};

/// One tree holding records of type `T`. Cloning is cheap. Every write passes the
/// store's [`Gate`], so a running snapshot keeps what it changes.
pub struct Table<T> {
    pub(super) tree: sled::Tree,
    pub(super) gate: Arc<Gate>,
    pub(super) space: Arc<Space>,
    pub(super) journal: Arc<Journal>,
    _t: PhantomData<fn() -> T>,
}

impl<T> Clone for Table<T> {
    fn clone(&self) -> Self {
        Self {
            tree: self.tree.clone(),
            gate: self.gate.clone(),
            space: self.space.clone(),
            journal: self.journal.clone(),
            _t: PhantomData,
        }
    }
}

/// The outcome of a compare-and-swap.
#[derive(Debug, PartialEq)]
pub enum Cas<T> {
    /// The swap happened.
    Swapped,
    /// Someone else changed the record first; here is what it holds now.
    Conflict(Option<T>),
}

type Entry<T> = Result<(Vec<u8>, T), StoreError>;

impl<T: Record> Table<T> {
    pub(super) fn new(
        tree: sled::Tree,
        gate: Arc<Gate>,
        space: Arc<Space>,
        journal: Arc<Journal>,
    ) -> Self {
        Self {
            tree,
            gate,
            space,
            journal,
            _t: PhantomData,
        }
    }

    /// One write of `key`, through the gate.
    fn write<R>(&self, key: &[u8], f: impl FnOnce() -> sled::Result<R>) -> sled::Result<R> {
        self.gate.write(&self.tree, &mut std::iter::once(key), f)
    }

    pub fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<T>, StoreError> {
        match self.tree.get(key)? {
            Some(v) => Ok(Some(codec::decode(&v)?)),
            None => Ok(None),
        }
    }

    pub fn insert(&self, key: impl AsRef<[u8]>, value: &T) -> Result<(), StoreError> {
        self.space.check()?;
        let (key, bytes) = (key.as_ref(), codec::encode(value)?);
        self.write(key, || self.tree.insert(key, bytes))?;
        Ok(())
    }

    /// Insert only if the key is absent; `false` when it was already there.
    pub fn insert_new(&self, key: impl AsRef<[u8]>, value: &T) -> Result<bool, StoreError> {
        self.space.check()?;
        let (key, bytes) = (key.as_ref(), codec::encode(value)?);
        Ok(self
            .write(key, || {
                self.tree
                    .compare_and_swap(key, None as Option<&[u8]>, Some(bytes))
            })?
            .is_ok())
    }

    pub fn remove(&self, key: impl AsRef<[u8]>) -> Result<Option<T>, StoreError> {
        self.space.check()?;
        let key = key.as_ref();
        match self.write(key, || self.tree.remove(key))? {
            Some(v) => Ok(Some(codec::decode(&v)?)),
            None => Ok(None),
        }
    }

    /// Replace `old` by `new` atomically, or report what the record holds now.
    /// `None` for `old` means "absent"; `None` for `new` removes.
    pub fn compare_and_swap(
        &self,
        key: impl AsRef<[u8]>,
        old: Option<&T>,
        new: Option<&T>,
    ) -> Result<Cas<T>, StoreError> {
        let mut expected = old.map(codec::encode).transpose()?;
        let new = new.map(codec::encode).transpose()?;
        self.space.check()?;
        let key = key.as_ref();
        loop {
            let swapped = self.write(key, || {
                self.tree
                    .compare_and_swap(key, expected.as_deref(), new.clone())
            })?;
            let current = match swapped {
                Ok(()) => return Ok(Cas::Swapped),
                Err(e) => e.current,
            };
            let value = current.as_ref().map(|v| codec::decode(v)).transpose()?;
            // A record written in an older layout holds `old` in other bytes than
            // today's encoding: swap against the bytes actually stored (once; the
            // retry compares them exactly).
            if let (Some(raw), Some(want)) = (&current, &expected)
                && raw.first() != Some(&T::VERSION)
                && raw.as_ref() != want.as_slice()
                && let Some(v) = &value
                && codec::encode(v)? == *want
            {
                expected = Some(raw.to_vec());
                continue;
            }
            return Ok(Cas::Conflict(value));
        }
    }

    /// Read-modify-write with retry on conflict; `f` returns the new value (or `None`
    /// to remove) and may be called several times. Returns the value written.
    pub fn update<F>(&self, key: impl AsRef<[u8]>, mut f: F) -> Result<Option<T>, StoreError>
    where
        F: FnMut(Option<T>) -> Option<T>,
    {
        let key = key.as_ref();
        self.space.check()?;
        loop {
            let current_raw = self.tree.get(key)?;
            let current = current_raw
                .as_ref()
                .map(|v| codec::decode::<T>(v))
                .transpose()?;
            let next = f(current);
            let next_raw = next.as_ref().map(codec::encode).transpose()?;
            if self
                .write(key, || {
                    self.tree.compare_and_swap(key, current_raw, next_raw)
                })?
                .is_ok()
            {
                return Ok(next);
            }
        }
    }

    fn decode_entry(r: sled::Result<(sled::IVec, sled::IVec)>) -> Entry<T> {
        let (k, v) = r?;
        Ok((k.to_vec(), codec::decode(&v)?))
    }

    /// Every record, in key order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = Entry<T>> + use<T> {
        self.tree.iter().map(Self::decode_entry)
    }

    /// Records whose key starts with `prefix`, in key order.
    pub fn scan_prefix<P: AsRef<[u8]>>(
        &self,
        prefix: P,
    ) -> impl DoubleEndedIterator<Item = Entry<T>> + use<P, T> {
        self.tree.scan_prefix(prefix).map(Self::decode_entry)
    }

    /// Records in a key range, in key order (`.rev()` for newest first).
    pub fn range<K, R>(&self, range: R) -> impl DoubleEndedIterator<Item = Entry<T>> + use<K, R, T>
    where
        K: AsRef<[u8]>,
        R: RangeBounds<K>,
    {
        self.tree.range(range).map(Self::decode_entry)
    }

    /// The record with the highest key.
    pub fn last(&self) -> Result<Option<(Vec<u8>, T)>, StoreError> {
        self.tree
            .last()?
            .map(|kv| Self::decode_entry(Ok(kv)))
            .transpose()
    }

    /// The record with the lowest key.
    pub fn first(&self) -> Result<Option<(Vec<u8>, T)>, StoreError> {
        self.tree
            .first()?
            .map(|kv| Self::decode_entry(Ok(kv)))
            .transpose()
    }

    /// Number of records (walks the tree: O(n)).
    pub fn len(&self) -> usize {
        self.tree.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tree.is_empty()
    }

    /// Write several records and removals as one atomic change (an [`AtomicWrite`]).
    pub fn apply(&self, puts: &[(Vec<u8>, T)], removes: &[Vec<u8>]) -> Result<(), StoreError> {
        let mut w = AtomicWrite::new();
        for (k, v) in puts {
            self.put_in(&mut w, k, v)?;
        }
        for k in removes {
            self.remove_in(&mut w, k);
        }
        w.commit()
    }

    /// Remove every record.
    pub fn clear(&self) -> Result<(), StoreError> {
        self.space.check()?;
        self.gate.write_all(&self.tree, || self.tree.clear())?;
        Ok(())
    }
}
