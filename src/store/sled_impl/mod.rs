//! The sled backend of each domain's storage trait: byte-key layouts, compare-and-swap
//! loops and index trees live here, one file per domain, and nowhere else.

mod snapshot;

pub use snapshot::SledTarget;
