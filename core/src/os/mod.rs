//! The production binding: the only module in core allowed to touch the operating system
//! (`std::fs`, `std::time::Instant::now`, `SystemTime::now`, threads). core/tests/tidy.rs
//! keeps every other module out of those APIs.
//!
//! Decision (docs/build.md): the binding lives here in core rather than in a separate crate,
//! because it is small and the `sluice` binary needs nothing else; the simulator links the
//! same code but never calls it.

mod clock;
mod disk;

pub use clock::OsClock;
pub use disk::{OsDisk, OsFile};
