//! The file system state faultfs keeps: two views of the same tree and the operations between
//! them.
//!
//! * The **live** view is what the running process sees: every write, truncate, create,
//!   rename and remove applied at once.
//! * The **durable** view is what the medium holds: what a crash would leave.
//! * **Pending** is the ordered list of operations in the live view not yet in the durable
//!   view (the page cache and the directory journal). `sync_data` moves a file's data
//!   operations to the durable view; `sync_dir` moves a directory's name operations.
//!
//! Invariant, until an fsync fails: durable + pending applied in order == live. After a
//! failed fsync the dropped writes are in the live view only (see `inject`), which is the
//! anomaly being modelled, not a bug.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

pub const SECTOR_BYTES: u64 = 512;

pub type InodeId = u64;
pub type OpId = u64;

/// What a name points at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Node {
    File(InodeId),
    Dir,
}

/// A file's bytes in both views.
#[derive(Clone, Debug, Default)]
pub struct Inode {
    pub live: Vec<u8>,
    pub durable: Vec<u8>,
}

/// An operation not yet durable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pending {
    pub id: OpId,
    pub op: PendingOp,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PendingOp {
    Write {
        inode: InodeId,
        offset: u64,
        data: Vec<u8>,
    },
    SetLen {
        inode: InodeId,
        len: u64,
    },
    /// A name operation in directory `dir`.
    Name {
        dir: PathBuf,
        op: NameOp,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NameOp {
    Create { path: PathBuf, node: Node },
    Remove { path: PathBuf },
    Rename { from: PathBuf, to: PathBuf },
}

impl PendingOp {
    pub fn is_data(&self) -> bool {
        !matches!(self, PendingOp::Name { .. })
    }

    pub fn inode(&self) -> Option<InodeId> {
        match self {
            PendingOp::Write { inode, .. } | PendingOp::SetLen { inode, .. } => Some(*inode),
            PendingOp::Name { .. } => None,
        }
    }
}

/// A namespace: path to node, keyed by the path's text. Paths reach faultfs checked and
/// canonical (`check_relative_path`), so one name has one text, and text compares bytewise,
/// which is much cheaper than `Path`'s component-wise order at every level of every lookup
/// (it was a twentieth of a simulation). The iteration order is therefore not `Path` order,
/// and nothing may depend on it: `list_dir` sorts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Names(BTreeMap<String, Node>);

impl Names {
    /// A path that is not UTF-8 names nothing (every name in the map was checked).
    pub fn get(&self, path: &Path) -> Option<&Node> {
        self.0.get(path.to_str()?)
    }

    pub fn contains(&self, path: &Path) -> bool {
        self.get(path).is_some()
    }

    pub fn insert(&mut self, path: &Path, node: Node) {
        let text = path.to_str().expect("faultfs names are checked UTF-8 before they are inserted");
        self.0.insert(text.to_owned(), node);
    }

    pub fn remove(&mut self, path: &Path) -> Option<Node> {
        self.0.remove(path.to_str()?)
    }

    /// Every name, in no meaningful order.
    pub fn paths(&self) -> impl Iterator<Item = &Path> {
        self.0.keys().map(Path::new)
    }

    pub fn values(&self) -> impl Iterator<Item = &Node> {
        self.0.values()
    }
}

/// The whole tree. Paths are relative; the root is the empty path and always exists.
#[derive(Clone, Debug, Default)]
pub struct Tree {
    pub live: Names,
    pub durable: Names,
    pub inodes: BTreeMap<InodeId, Inode>,
    pub pending: Vec<Pending>,
    pub next_inode: InodeId,
    pub next_op: OpId,
    /// Sectors that fail every read until rewritten: (inode, sector index).
    pub bad_sectors: BTreeSet<(InodeId, u64)>,
}

pub fn parent_of(path: &Path) -> PathBuf {
    path.parent().map(Path::to_path_buf).unwrap_or_default()
}

/// Applies a write to a byte vector, zero-filling any gap.
pub fn write_bytes(bytes: &mut Vec<u8>, offset: u64, data: &[u8]) {
    let end = offset as usize + data.len();
    if bytes.len() < end {
        bytes.resize(end, 0);
    }
    bytes[offset as usize..end].copy_from_slice(data);
}

/// Applies a name operation to a namespace.
pub fn apply_name(names: &mut Names, op: &NameOp) {
    match op {
        NameOp::Create { path, node } => {
            names.insert(path, *node);
        }
        NameOp::Remove { path } => {
            names.remove(path);
        }
        NameOp::Rename { from, to } => {
            // A rename whose source never became durable has nothing to move.
            if let Some(node) = names.remove(from) {
                names.insert(to, node);
            }
        }
    }
}

impl Tree {
    pub fn is_dir(names: &Names, path: &Path) -> bool {
        path.as_os_str().is_empty() || names.get(path) == Some(&Node::Dir)
    }

    pub fn push(&mut self, op: PendingOp) -> OpId {
        let id = self.next_op;
        self.next_op += 1;
        self.pending.push(Pending { id, op });
        id
    }

    pub fn new_inode(&mut self) -> InodeId {
        let id = self.next_inode;
        self.next_inode += 1;
        self.inodes.insert(id, Inode::default());
        id
    }

    /// Applies a data operation to an inode's durable bytes; `torn_len` keeps only a prefix
    /// of a write.
    pub fn apply_durable_data(&mut self, op: &PendingOp, torn_len: Option<u64>) {
        match op {
            PendingOp::Write { inode, offset, data } => {
                let keep = torn_len.map_or(data.len(), |n| n as usize);
                if let Some(node) = self.inodes.get_mut(inode) {
                    write_bytes(&mut node.durable, *offset, &data[..keep]);
                }
            }
            PendingOp::SetLen { inode, len } => {
                if let Some(node) = self.inodes.get_mut(inode) {
                    node.durable.resize(*len as usize, 0);
                }
            }
            PendingOp::Name { .. } => unreachable!("not a data operation"),
        }
    }

    /// Makes every pending data operation on `inode` durable, in order.
    pub fn sync_inode(&mut self, inode: InodeId) {
        // In place: a sync is the commonest operation of a simulated run, and most pending
        // operations belong to other files.
        let mut pending = std::mem::take(&mut self.pending);
        // `retain` visits in order, so the synced operations apply in the order they were made.
        pending.retain(|p| {
            let synced = p.op.inode() == Some(inode);
            if synced {
                self.apply_durable_data(&p.op, None);
            }
            !synced
        });
        self.pending = pending;
    }

    /// Drops every pending write on `inode` without making it durable (a failed fsync: the
    /// dirty pages are written off). Length changes stay pending: they are journaled metadata,
    /// which a failed data write-back does not discard. Returns how many writes and bytes
    /// were dropped.
    pub fn drop_inode_pending(&mut self, inode: InodeId) -> (usize, u64) {
        let before = self.pending.len();
        let mut bytes = 0u64;
        self.pending.retain(|p| match &p.op {
            PendingOp::Write { inode: i, data, .. } if *i == inode => {
                bytes += data.len() as u64;
                false
            }
            _ => true,
        });
        (before - self.pending.len(), bytes)
    }

    /// True if a pending write on `inode` overlaps `[offset, offset + len)`: those bytes are
    /// dirty in the page cache, so a read of them never reaches the device.
    pub fn pending_write_overlaps(&self, inode: InodeId, offset: u64, len: u64) -> bool {
        self.pending.iter().any(|p| match &p.op {
            PendingOp::Write { inode: i, offset: o, data } => {
                *i == inode && *o < offset + len && offset < *o + data.len() as u64
            }
            _ => false,
        })
    }

    /// Makes every pending name operation in directory `dir` durable, in order.
    pub fn sync_dir(&mut self, dir: &Path) {
        self.pending.retain(|p| match &p.op {
            PendingOp::Name { dir: d, op } if d == dir => {
                apply_name(&mut self.durable, op);
                false
            }
            _ => true,
        });
    }

    /// After a crash: drops durable names whose parent directory is not durable, resets the
    /// live view to the durable one, forgets pending operations and unreachable inodes.
    pub fn restart_from_durable(&mut self) {
        // Each pass removes at least one orphan or stops; bounded by the number of names.
        loop {
            let orphans: Vec<PathBuf> = self
                .durable
                .paths()
                .filter(|path| !Self::is_dir(&self.durable, &parent_of(path)))
                .map(Path::to_path_buf)
                .collect();
            if orphans.is_empty() {
                break;
            }
            for path in orphans {
                self.durable.remove(&path);
            }
        }
        self.pending.clear();
        self.live = self.durable.clone();
        let reachable: BTreeSet<InodeId> = self
            .durable
            .values()
            .filter_map(|node| match node {
                Node::File(inode) => Some(*inode),
                Node::Dir => None,
            })
            .collect();
        self.inodes.retain(|id, _| reachable.contains(id));
        for inode in self.inodes.values_mut() {
            inode.live = inode.durable.clone();
        }
        self.bad_sectors.retain(|(inode, _)| reachable.contains(inode));
    }

    /// Bytes held by files that have a name in the live view (removed files free their space;
    /// a removed file still open would hold it on Linux, which this undercounts).
    pub fn live_bytes_total(&self) -> u64 {
        self.live
            .values()
            .filter_map(|node| match node {
                Node::File(inode) => self.inodes.get(inode).map(|i| i.live.len() as u64),
                Node::Dir => None,
            })
            .sum()
    }
}
