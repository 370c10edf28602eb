//! Hostile archives: a forged, damaged copy of an archive is refused with an error, or reads
//! exactly what the intact archive holds. The reader never panics and never hands out other
//! messages, whatever lengths the archive declares.

use super::Violation;
use crate::cluster::backup::Archived;

pub const NAME: &str = "archive-hostile";

/// Reads `damaged` (a copy of the archive `intact` was read from, damaged as `what` says).
pub fn check(intact: &Archived, what: &str, damaged: &[u8], at_ms: u64) -> Result<(), Violation> {
    let read = std::panic::catch_unwind(|| Archived::read(damaged));
    match read {
        Err(panic) => {
            let msg = crate::runtime::panic_message(&*panic);
            Err(Violation::new(NAME, at_ms, format!("the reader panicked on {what}: {msg}")))
        }
        Ok(Ok(got)) if got != *intact => Err(Violation::new(
            NAME,
            at_ms,
            format!("{what}: read {} messages other than the archive's", got.messages.len()),
        )),
        Ok(_) => Ok(()),
    }
}
