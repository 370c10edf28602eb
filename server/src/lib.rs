//! The production side of sluice: the tokio binding of core's node (TCP links between nodes,
//! the node thread), the NATS client port, the server's configuration, and the `sluice`
//! binary's commands. Core stays synchronous and runtime-free; everything here is the
//! "bindings" layer of DESIGN §2. Decisions and formats: docs/server.md.
//!
//! As the binding it is allowed the operating system (files, the OS clock, threads, sockets)
//! that clippy.toml and core/tests/tidy.rs keep out of core, faultfs and sim.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

pub mod backup;
pub mod bench;
pub mod checkpoint;
pub mod client;
pub mod cluster;
pub mod config;
pub mod driver;
pub mod logging;
pub mod nats;
pub mod ops;
pub mod server;
pub mod startup;
pub mod verify;
