//! sluice-scenarios: the named simulation scenarios ([`catalog`]), running one
//! ([`runner`]), shrinking a failing fault schedule ([`shrink`]) and the regression corpus of
//! seeds that once failed ([`corpus`]). The `sluice-sim` command line is `src/main.rs`.

pub mod catalog;
pub mod corpus;
pub mod runner;
pub mod shrink;
