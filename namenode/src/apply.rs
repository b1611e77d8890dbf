//! The state machine: applies one [`MetaOp`] to the namespace in memory,
//! all its changes at once, with the op's log index.
//!
//! Knows nothing of where ops come from (the raft log) nor of disks (the
//! checkpoint writer stores what changed, `checkpoint/`). Validation
//! happens here, deterministically, so an op that fails (the file
//! appeared meanwhile, the directory is no longer empty) applies as a
//! no-op apart from the index and returns its error. Callers apply ops
//! one at a time, in index order. Reads during an op see the state before
//! it: its changes land together at commit.

use crate::error::{NamenodeError, Result};
use crate::leases::RECOVERY_HOLDER;
use crate::meta_op::{CallKey, MetaOp, MetaResult, Proposal};
use crate::namespace::retry_cache::RetryKey;
use crate::namespace::{self, BlockMeta, Change, Counters, FileMeta, Inode, Namespace, ROOT_ID};
use crate::path;

/// Changes of one op, applied together.
struct Txn<'a> {
    ns: &'a Namespace,
    changes: Vec<Change>,
    next_inode: u64,
    next_block: u64,
    next_gen_stamp: u64,
}

impl<'a> Txn<'a> {
    fn new(ns: &'a Namespace) -> Txn<'a> {
        let c = ns.counters();
        Txn {
            ns,
            changes: Vec::new(),
            next_inode: c.next_inode,
            next_block: c.next_block,
            next_gen_stamp: c.next_gen_stamp,
        }
    }

    fn put_inode(&mut self, inode: &Inode) {
        self.changes.push(Change::PutInode(inode.clone()));
    }

    fn link(&mut self, inode: &Inode) {
        self.changes.push(Change::Link {
            parent: inode.parent,
            name: inode.name.clone(),
            id: inode.id,
        });
    }

    fn unlink(&mut self, inode: &Inode) {
        self.changes.push(Change::Unlink {
            parent: inode.parent,
            name: inode.name.clone(),
        });
    }

    fn remove_inode(&mut self, inode: &Inode) {
        self.changes.push(Change::RemoveInode(inode.id));
    }

    fn set_block_owner(&mut self, block: u64, inode: u64) {
        self.changes.push(Change::SetBlockOwner { block, inode });
    }

    fn remove_block_owner(&mut self, block: u64) {
        self.changes.push(Change::RemoveBlockOwner(block));
    }

    fn commit(self, index: u64) {
        let counters = Counters {
            applied: index,
            next_inode: self.next_inode,
            next_block: self.next_block,
            next_gen_stamp: self.next_gen_stamp,
        };
        self.ns.commit(self.changes, counters);
    }

    /// A new inode with a fresh id; `file` is `None` for a directory.
    fn new_inode(
        &mut self,
        parent: u64,
        name: &str,
        attrs: &Attrs,
        file: Option<FileMeta>,
    ) -> Inode {
        let id = self.next_inode;
        self.next_inode += 1;
        Inode {
            id,
            parent,
            name: name.to_string(),
            owner: attrs.owner.to_string(),
            group: attrs.group.to_string(),
            mode: attrs.mode,
            mtime_ms: attrs.now_ms,
            atime_ms: attrs.now_ms,
            file,
        }
    }
}

/// Ownership, permission and time of inodes an op creates.
#[derive(Clone, Copy)]
struct Attrs<'a> {
    owner: &'a str,
    group: &'a str,
    mode: u32,
    now_ms: u64,
}

/// Creates the root directory if the store is new, durably.
pub fn format_if_new(ns: &Namespace, now_ms: u64) -> Result<()> {
    if ns.inode(ROOT_ID)?.is_some() {
        return Ok(());
    }
    let root = Inode {
        id: ROOT_ID,
        parent: 0,
        name: String::new(),
        owner: "rfs".into(),
        group: "supergroup".into(),
        mode: 0o755,
        mtime_ms: now_ms,
        atime_ms: now_ms,
        file: None,
    };
    let mut t = Txn::new(ns);
    t.put_inode(&root);
    t.commit(0);
    ns.checkpoint()?;
    Ok(())
}

/// Records only that log entry `index` was applied (a leader's empty
/// entry, a membership entry).
pub fn skip(ns: &Namespace, index: u64) -> Result<()> {
    Txn::new(ns).commit(index);
    Ok(())
}

/// Applies the proposal at log index `index`. The index is recorded even
/// when the op fails validation, so replay never applies it twice. A
/// proposal naming a call already in the retry cache returns the recorded
/// result and changes nothing: the client retried after the first one
/// was applied (a timeout, a failover).
///
/// A call below the mark its client's session entry holds is refused
/// unapplied (its client had every answer below the mark); a call raising
/// the mark drops the results below it ([`crate::namespace::retry_cache`]).
pub fn apply(ns: &Namespace, index: u64, p: &Proposal) -> Result<Result<MetaResult>> {
    let mut answered = 0;
    if let Some(call) = &p.call {
        if let Some(recorded) = ns.retry_cached(call)? {
            skip(ns, index)?;
            return Ok(recorded);
        }
        answered = ns.calls_answered_below(&call.client)?;
        if call.call < answered {
            skip(ns, index)?;
            return Ok(Err(NamenodeError::StaleCall {
                client: call.client.clone(),
                call: call.call,
                answered_below: answered,
            }));
        }
    }
    let mut t = Txn::new(ns);
    let result = apply_op(&mut t, &p.op);
    if result.is_err() {
        // Keep only the index: a failed op changes nothing else.
        t = Txn::new(ns);
    }
    if let Some(call) = &p.call {
        let entry = namespace::RetryEntry::new(p.now_ms, &result);
        t.changes.push(Change::PutRetry(RetryKey::of(call), entry));
        // A client cannot have had the answer of the call it is making.
        let below = call.answered_below.min(call.call);
        if below > answered {
            forget_answered(&mut t, &call.client, below, p.now_ms);
        }
    }
    t.commit(index);
    Ok(result)
}

/// Drops `client`'s results of calls below `below` and raises the mark
/// in its session entry to it.
fn forget_answered(t: &mut Txn, client: &str, below: u64, now_ms: u64) {
    for key in t.ns.retry_calls_below(client, below) {
        t.changes.push(Change::RemoveRetry(key));
    }
    let mark = Ok(MetaResult::CallsAnswered { below });
    let entry = namespace::RetryEntry::new(now_ms, &mark);
    t.changes
        .push(Change::PutRetry(RetryKey::session(client), entry));
}

fn expire_retry_cache(t: &mut Txn, before_ms: u64) -> Result<MetaResult> {
    let (removed, _) = drop_retry_entries(t, before_ms, &[], usize::MAX)?;
    Ok(MetaResult::RetryCacheExpired { removed })
}

fn sweep_retry_cache(t: &mut Txn, before_ms: u64, after: &[u8], limit: u32) -> Result<MetaResult> {
    let (removed, next) = drop_retry_entries(t, before_ms, after, limit.max(1) as usize)?;
    Ok(MetaResult::RetryCacheSwept { removed, next })
}

/// Drops the entries recorded before `before_ms` among the first `limit`
/// after key `after`; returns how many, and the last key looked at when
/// the limit cut the scan short.
fn drop_retry_entries(
    t: &mut Txn,
    before_ms: u64,
    after: &[u8],
    limit: usize,
) -> Result<(u64, Option<Vec<u8>>)> {
    let mut removed = 0;
    let mut seen = 0;
    for (key, at_ms) in t.ns.retry_entries_after(after, limit)? {
        seen += 1;
        let last = seen == limit;
        if at_ms < before_ms {
            t.changes.push(Change::RemoveRetry(key.clone()));
            removed += 1;
        }
        if last {
            return Ok((removed, Some(key.to_bytes())));
        }
    }
    Ok((removed, None))
}

/// The checkpoint key of `call` in the retry cache (for tests and tools).
pub fn retry_key(call: &CallKey) -> Vec<u8> {
    RetryKey::of(call).to_bytes()
}

/// Creates the inode at `comps` (a directory when `file` is `None`) under
/// its parent, creating missing parents if asked, and links it there.
fn create_child(
    t: &mut Txn,
    comps: &[&str],
    create_parent: bool,
    attrs: &Attrs,
    file: Option<FileMeta>,
) -> Result<Inode> {
    let parent = parent_dir(t, comps, create_parent, attrs)?;
    let inode = t.new_inode(parent.id, comps[comps.len() - 1], attrs, file);
    t.put_inode(&inode);
    t.link(&inode);
    Ok(inode)
}
/// Parent directory inode of `comps`, creating missing ones if asked.
/// Created parents get `attrs` with mode 0755.
fn parent_dir(t: &mut Txn, comps: &[&str], create_parent: bool, attrs: &Attrs) -> Result<Inode> {
    let dir_attrs = Attrs {
        mode: 0o755,
        ..*attrs
    };
    let parent_comps = &comps[..comps.len() - 1];
    let r = t.ns.resolve(parent_comps)?;
    let mut dir = r.inodes.last().expect("root").clone();
    if !dir.is_dir() {
        return Err(NamenodeError::NotDirectory(path::join(
            &parent_comps[..r.inodes.len() - 1],
        )));
    }
    if !r.complete {
        if !create_parent {
            return Err(NamenodeError::NotFound(path::join(parent_comps)));
        }
        for name in &parent_comps[r.inodes.len() - 1..] {
            let d = t.new_inode(dir.id, name, &dir_attrs, None);
            t.put_inode(&d);
            t.link(&d);
            dir = d;
        }
    }
    Ok(dir)
}

fn writable_file(t: &Txn, path: &str, client_id: &str) -> Result<Inode> {
    let inode = t.ns.get(path)?;
    let f = inode
        .file
        .as_ref()
        .ok_or_else(|| NamenodeError::IsDirectory(path.to_string()))?;
    match &f.writer {
        Some(w) if w == client_id => Ok(inode),
        Some(w) => Err(NamenodeError::LeaseConflict {
            path: path.to_string(),
            holder: w.clone(),
        }),
        None => Err(NamenodeError::NoLease {
            path: path.to_string(),
            client: client_id.to_string(),
        }),
    }
}

/// Records the final length the writer reports for `b`, which must be the
/// file's last block with its generation stamp; a block holds at most the
/// file's block size (this also keeps file lengths far from overflow).
fn commit_block(path: &str, file: &mut FileMeta, b: &BlockMeta) -> Result<()> {
    let block_size = file.block_size;
    let bad = |why: String| Err(NamenodeError::InvalidArgument(format!("{path}: {why}")));
    let Some(last) = file.blocks.last_mut() else {
        return bad(format!("block {} does not belong to this file", b.id));
    };
    if last.id != b.id {
        return bad(format!(
            "block {} is not the file's last block {}",
            b.id, last.id
        ));
    }
    if last.gen_stamp != b.gen_stamp {
        return bad(format!(
            "block {} has generation stamp {}, not {}",
            b.id, last.gen_stamp, b.gen_stamp
        ));
    }
    if b.len > block_size {
        return bad(format!(
            "block {} length {} exceeds the block size {block_size}",
            b.id, b.len
        ));
    }
    last.len = b.len;
    Ok(())
}

fn apply_op(t: &mut Txn, op: &MetaOp) -> Result<MetaResult> {
    match op {
        MetaOp::Mkdirs {
            path: p,
            create_parent,
            owner,
            group,
            mode,
            now_ms,
        } => {
            let comps = path::components(p)?;
            if let Some(existing) = t.ns.lookup(p)? {
                return if existing.is_dir() {
                    Ok(MetaResult::Mkdirs { created: false })
                } else {
                    Err(NamenodeError::AlreadyExists(p.clone()))
                };
            }
            let attrs = Attrs {
                owner,
                group,
                mode: *mode,
                now_ms: *now_ms,
            };
            create_child(t, &comps, *create_parent, &attrs, None)?;
            Ok(MetaResult::Mkdirs { created: true })
        }
        MetaOp::Create {
            path: p,
            client_id,
            overwrite,
            replication,
            block_size,
            mode,
            create_parent,
            owner,
            group,
            now_ms,
            take_over_from,
        } => {
            let comps = path::components(p)?;
            if comps.is_empty() {
                return Err(NamenodeError::IsDirectory(p.clone()));
            }
            let mut replaced_blocks = Vec::new();
            if let Some(existing) = t.ns.lookup(p)? {
                let f = existing
                    .file
                    .as_ref()
                    .ok_or_else(|| NamenodeError::IsDirectory(p.clone()))?;
                if let Some(w) = &f.writer {
                    // A file the namenode is recovering is nobody's to take.
                    let taken_over =
                        take_over_from.as_deref() == Some(w.as_str()) && w != RECOVERY_HOLDER;
                    if w != client_id && !taken_over {
                        return Err(NamenodeError::LeaseConflict {
                            path: p.clone(),
                            holder: w.clone(),
                        });
                    }
                }
                if !overwrite {
                    return Err(NamenodeError::AlreadyExists(p.clone()));
                }
                replaced_blocks = f.blocks.clone();
                t.unlink(&existing);
                t.remove_inode(&existing);
            }
            let attrs = Attrs {
                owner,
                group,
                mode: *mode,
                now_ms: *now_ms,
            };
            let file = FileMeta {
                replication: *replication,
                block_size: *block_size,
                blocks: Vec::new(),
                writer: Some(client_id.clone()),
            };
            let inode = create_child(t, &comps, *create_parent, &attrs, Some(file))?;
            Ok(MetaResult::Created {
                inode,
                replaced_blocks,
            })
        }
        MetaOp::AddBlock {
            path: p,
            client_id,
            previous,
            now_ms,
        } => {
            let mut inode = writable_file(t, p, client_id)?;
            add_block(t, p, &mut inode, previous.as_ref(), *now_ms)
        }
        MetaOp::Complete {
            path: p,
            client_id,
            last,
            now_ms,
        } => {
            let inode = t.ns.get(p)?;
            complete(t, p, inode, client_id, last.as_ref(), *now_ms)
        }
        MetaOp::AbandonBlock {
            path: p,
            client_id,
            block_id,
        } => {
            let mut inode = writable_file(t, p, client_id)?;
            drop_last_block(t, p, &mut inode, *block_id)?;
            t.put_inode(&inode);
            Ok(MetaResult::Abandoned)
        }
        MetaOp::CompleteDroppingBlock {
            path: p,
            client_id,
            block_id,
            now_ms,
        } => {
            let mut inode = writable_file(t, p, client_id)?;
            let f = inode.file.as_ref().expect("writable_file returns files");
            if f.blocks
                .last()
                .is_some_and(|b| b.id == *block_id && b.len > 0)
            {
                return Err(NamenodeError::InvalidArgument(format!(
                    "{p}: block {block_id} holds recorded bytes; complete it instead"
                )));
            }
            drop_last_block(t, p, &mut inode, *block_id)?;
            complete(t, p, inode, client_id, None, *now_ms)
        }
        MetaOp::UpdatePipeline {
            path: p,
            client_id,
            block_id,
            gen_stamp,
        } => update_pipeline(t, p, client_id, *block_id, *gen_stamp, None),
        MetaOp::RecoverPipeline {
            path: p,
            client_id,
            block_id,
            gen_stamp,
            acked_len,
        } => update_pipeline(t, p, client_id, *block_id, *gen_stamp, Some(*acked_len)),
        MetaOp::RecoverLease {
            inode_id,
            holder,
            drop_last,
            now_ms,
        } => recover_lease(t, *inode_id, holder, *drop_last, *now_ms),
        MetaOp::CommitBlockSync {
            block,
            delete_block,
            now_ms,
        } => commit_block_sync(t, block, *delete_block, *now_ms),
        MetaOp::Delete {
            path: p,
            recursive,
            now_ms,
        } => delete(t, p, *recursive, *now_ms, None),
        MetaOp::DeleteInSteps {
            path: p,
            recursive,
            now_ms,
            step,
        } => delete(t, p, *recursive, *now_ms, Some(*step)),
        MetaOp::Reclaim { limit } => reclaim(t, *limit),
        MetaOp::CreateWithBlock { create } => create_with_block(t, create),
        MetaOp::Rename { src, dst, now_ms } => rename(t, src, dst, *now_ms),
        MetaOp::RenameOverwrite { src, dst, now_ms } => rename_overwrite(t, src, dst, *now_ms),
        MetaOp::ExpireRetryCache { before_ms } => expire_retry_cache(t, *before_ms),
        MetaOp::SweepRetryCache {
            before_ms,
            after,
            limit,
        } => sweep_retry_cache(t, *before_ms, after, *limit),
        MetaOp::Decommission {
            datanode_id,
            decommission,
        } => {
            t.changes.push(Change::Decommission {
                datanode: datanode_id.clone(),
                on: *decommission,
            });
            Ok(MetaResult::DecommissionSet)
        }
        MetaOp::SetReplication {
            path: p,
            replication,
        } => {
            let mut inode = t.ns.get(p)?;
            let f = inode
                .file
                .as_mut()
                .ok_or_else(|| NamenodeError::IsDirectory(p.clone()))?;
            let changed = f.replication != *replication;
            f.replication = *replication;
            let blocks = f.blocks.clone();
            t.put_inode(&inode);
            Ok(MetaResult::ReplicationSet { changed, blocks })
        }
    }
}

/// Commits `previous` (the block the writer filled) and gives the file
/// `inode`, whose writer the caller checked, a new last block.
fn add_block(
    t: &mut Txn,
    p: &str,
    inode: &mut Inode,
    previous: Option<&BlockMeta>,
    now_ms: u64,
) -> Result<MetaResult> {
    let f = inode
        .file
        .as_mut()
        .ok_or_else(|| NamenodeError::IsDirectory(p.to_string()))?;
    if let Some(prev) = previous {
        commit_block(p, f, prev)?;
    }
    let block = BlockMeta {
        id: t.next_block,
        gen_stamp: t.next_gen_stamp,
        len: 0,
    };
    t.next_block += 1;
    t.next_gen_stamp += 1;
    f.blocks.push(block);
    // Every block before the new (open) one counts now.
    let offset = f.length();
    let replication = f.replication;
    inode.mtime_ms = now_ms;
    t.set_block_owner(block.id, inode.id);
    t.put_inode(inode);
    Ok(MetaResult::BlockAdded {
        block,
        offset,
        replication,
    })
}

/// See [`MetaOp::CreateWithBlock`]: applies the create as a `Create`
/// entry would, then adds the first block to the inode it made as
/// `AddBlock` adds one. (That inode is not in the namespace until this op
/// commits, so `AddBlock`'s lookup and lease check cannot run here; the
/// create has just made this writer the holder.)
fn create_with_block(t: &mut Txn, create: &MetaOp) -> Result<MetaResult> {
    let MetaOp::Create {
        path: p, now_ms, ..
    } = create
    else {
        return Err(NamenodeError::InvalidArgument(format!(
            "a create with its first block holds {create:?}, not a create"
        )));
    };
    let (mut inode, replaced_blocks) = match apply_op(t, create)? {
        MetaResult::Created {
            inode,
            replaced_blocks,
        } => (inode, replaced_blocks),
        other => return Err(unexpected(create, other)),
    };
    let block = match add_block(t, p, &mut inode, None, *now_ms)? {
        MetaResult::BlockAdded { block, .. } => block,
        other => return Err(unexpected(create, other)),
    };
    Ok(MetaResult::CreatedWithBlock {
        inode,
        replaced_blocks,
        block,
    })
}

/// Closes `inode` (read by the caller, maybe changed by this op already)
/// for `client_id`, committing `last` when given.
fn complete(
    t: &mut Txn,
    p: &str,
    mut inode: Inode,
    client_id: &str,
    last: Option<&BlockMeta>,
    now_ms: u64,
) -> Result<MetaResult> {
    let f = inode
        .file
        .as_mut()
        .ok_or_else(|| NamenodeError::IsDirectory(p.to_string()))?;
    match &f.writer {
        None => return Ok(MetaResult::Completed { inode }), // already complete: idempotent
        Some(w) if w != client_id => {
            return Err(NamenodeError::LeaseConflict {
                path: p.to_string(),
                holder: w.clone(),
            })
        }
        Some(_) => {}
    }
    if let Some(b) = last {
        commit_block(p, f, b)?;
    }
    f.writer = None;
    inode.mtime_ms = now_ms;
    t.put_inode(&inode);
    Ok(MetaResult::Completed { inode })
}

/// Removes `block_id`, which must be the last block of `inode`'s file.
fn drop_last_block(t: &mut Txn, p: &str, inode: &mut Inode, block_id: u64) -> Result<()> {
    let f = inode.file.as_mut().expect("callers pass files");
    if f.blocks.last().map(|b| b.id) != Some(block_id) {
        return Err(NamenodeError::InvalidArgument(format!(
            "{p}: block {block_id} is not the file's last block"
        )));
    }
    f.blocks.pop();
    t.remove_block_owner(block_id);
    Ok(())
}

fn unexpected(op: &MetaOp, result: MetaResult) -> NamenodeError {
    NamenodeError::Internal(format!("{op:?} applied as {result:?}"))
}

/// See [`MetaOp::RecoverPipeline`]; `acked_len` is `None` for the
/// earlier [`MetaOp::UpdatePipeline`], which recorded no length.
fn update_pipeline(
    t: &mut Txn,
    p: &str,
    client_id: &str,
    block_id: u64,
    gen_stamp: u64,
    acked_len: Option<u64>,
) -> Result<MetaResult> {
    let mut inode = writable_file(t, p, client_id)?;
    let f = inode.file.as_mut().expect("writable_file returns files");
    let (replication, block_size) = (f.replication, f.block_size);
    let Some(last) = f.blocks.last_mut().filter(|b| b.id == block_id) else {
        return Err(NamenodeError::InvalidArgument(format!(
            "{p}: block {block_id} is not the file's last block"
        )));
    };
    if last.gen_stamp != gen_stamp {
        return Err(NamenodeError::InvalidArgument(format!(
            "{p}: block {block_id} has generation stamp {}, not {gen_stamp}",
            last.gen_stamp
        )));
    }
    if let Some(len) = acked_len {
        if len > block_size {
            return Err(NamenodeError::InvalidArgument(format!(
                "{p}: acknowledged length {len} of block {block_id} exceeds the block size {block_size}"
            )));
        }
        last.len = len;
    }
    last.gen_stamp = t.next_gen_stamp;
    t.next_gen_stamp += 1;
    let block = *last;
    t.put_inode(&inode);
    Ok(MetaResult::PipelineUpdated { block, replication })
}

/// See [`MetaOp::RecoverLease`].
fn recover_lease(
    t: &mut Txn,
    inode_id: u64,
    holder: &str,
    drop_last: bool,
    now_ms: u64,
) -> Result<MetaResult> {
    let name = || format!("inode {inode_id}");
    let mut inode =
        t.ns.inode(inode_id)?
            .ok_or_else(|| NamenodeError::NotFound(name()))?;
    let f = inode
        .file
        .as_mut()
        .ok_or_else(|| NamenodeError::IsDirectory(name()))?;
    match &f.writer {
        Some(w) if w == holder => {}
        Some(w) => {
            return Err(NamenodeError::LeaseConflict {
                path: name(),
                holder: w.clone(),
            })
        }
        None => {
            return Err(NamenodeError::InvalidArgument(format!(
                "{}: not under construction",
                name()
            )))
        }
    }
    let mut dropped = None;
    if drop_last {
        if let Some(last) = f.blocks.last() {
            // Recorded bytes are acknowledged data: never thrown away here.
            if last.len != 0 {
                return Err(NamenodeError::InvalidArgument(format!(
                    "{}: last block {} holds {} recorded bytes; not dropping it",
                    name(),
                    last.id,
                    last.len
                )));
            }
            t.remove_block_owner(last.id);
            dropped = f.blocks.pop();
        }
    }
    let result = match f.blocks.last_mut() {
        Some(last) if !drop_last => {
            last.gen_stamp = t.next_gen_stamp;
            t.next_gen_stamp += 1;
            let block = *last;
            let replication = f.replication;
            f.writer = Some(RECOVERY_HOLDER.to_string());
            MetaResult::LeaseRecoveryStarted {
                inode: inode.clone(),
                block,
                replication,
            }
        }
        _ => {
            f.writer = None;
            inode.mtime_ms = now_ms;
            MetaResult::LeaseRecovered {
                inode: inode.clone(),
                dropped,
            }
        }
    };
    t.put_inode(&inode);
    Ok(result)
}

/// See [`MetaOp::CommitBlockSync`].
fn commit_block_sync(
    t: &mut Txn,
    b: &BlockMeta,
    delete_block: bool,
    now_ms: u64,
) -> Result<MetaResult> {
    let mut inode =
        t.ns.block_owner(b.id)?
            .ok_or_else(|| NamenodeError::NotFound(format!("block {}", b.id)))?;
    let name = format!("inode {}", inode.id);
    let f = inode
        .file
        .as_mut()
        .ok_or_else(|| NamenodeError::IsDirectory(name.clone()))?;
    let Some(last) = f.blocks.last().copied().filter(|l| l.id == b.id) else {
        return Err(NamenodeError::InvalidArgument(format!(
            "{name}: block {} is not the file's last block",
            b.id
        )));
    };
    if last.gen_stamp != b.gen_stamp {
        return Err(NamenodeError::InvalidArgument(format!(
            "{name}: block {} has generation stamp {}, not the recovery's {}",
            b.id, last.gen_stamp, b.gen_stamp
        )));
    }
    match f.writer.as_deref() {
        Some(RECOVERY_HOLDER) => {}
        // Already closed by this recovery: a repeated commit.
        None if last.len == b.len && !delete_block => {
            return Ok(MetaResult::LeaseRecovered {
                inode,
                dropped: None,
            })
        }
        None => {
            return Err(NamenodeError::InvalidArgument(format!(
                "{name}: not under construction"
            )))
        }
        Some(w) => {
            return Err(NamenodeError::LeaseConflict {
                path: name,
                holder: w.to_string(),
            })
        }
    }
    let mut dropped = None;
    if delete_block {
        t.remove_block_owner(b.id);
        dropped = f.blocks.pop();
    } else {
        commit_block(&name, f, b)?;
    }
    f.writer = None;
    inode.mtime_ms = now_ms;
    t.put_inode(&inode);
    Ok(MetaResult::LeaseRecovered { inode, dropped })
}

fn touch_dir(t: &mut Txn, id: u64, now_ms: u64) -> Result<()> {
    if let Some(mut d) = t.ns.inode(id)? {
        d.mtime_ms = now_ms;
        t.put_inode(&d);
    }
    Ok(())
}

/// Removes `p` (all of it when `recursive`). With `step`, a subtree of
/// more than `step` inodes is only unlinked here: it is detached, and
/// [`reclaim`] steps free it (`namespace/tree.rs`).
fn delete(
    t: &mut Txn,
    p: &str,
    recursive: bool,
    now_ms: u64,
    step: Option<u32>,
) -> Result<MetaResult> {
    let comps = path::components(p)?;
    if comps.is_empty() {
        return Err(NamenodeError::InvalidArgument(
            "cannot delete the root directory".into(),
        ));
    }
    let inode = t.ns.get(p)?;
    if inode.is_dir() && !recursive && t.ns.child_count(inode.id)? > 0 {
        return Err(NamenodeError::NotEmpty(p.to_string()));
    }
    let mut blocks = Vec::new();
    let below = t.ns.dir_totals(inode.id);
    if step.is_some_and(|step| below.files + below.dirs >= u64::from(step)) {
        t.unlink(&inode);
    } else {
        for n in t.ns.subtree(&inode)? {
            if let Some(f) = &n.file {
                blocks.extend(f.blocks.iter().copied());
            }
            t.unlink(&n);
            t.remove_inode(&n);
        }
    }
    touch_dir(t, inode.parent, now_ms)?;
    Ok(MetaResult::Deleted { blocks })
}

/// One step freeing detached subtrees: at most `limit` inodes, children
/// before their directory, each unlinked from its parent (a detached root
/// is unlinked already, and its name may since have been taken).
fn reclaim(t: &mut Txn, limit: u32) -> Result<MetaResult> {
    let (batch, roots_left) = t.ns.reclaim_batch(limit.max(1) as usize);
    let mut blocks = Vec::new();
    for (n, root) in &batch {
        if let Some(f) = &n.file {
            blocks.extend(f.blocks.iter().copied());
        }
        if !root {
            t.unlink(n);
        }
        t.remove_inode(n);
    }
    Ok(MetaResult::Reclaimed {
        freed: batch.len() as u64,
        blocks,
        more: roots_left > 0,
    })
}

/// HDFS rename rules: into an existing directory as `dst/<name>`; never
/// over an existing file; never into the source's own subtree.
fn rename(t: &mut Txn, src: &str, dst: &str, now_ms: u64) -> Result<MetaResult> {
    let src_comps = path::components(src)?;
    let dst_comps = path::components(dst)?;
    if src_comps.is_empty() {
        return Err(NamenodeError::InvalidArgument(
            "cannot rename the root directory".into(),
        ));
    }
    let node = t.ns.get(src)?;
    let src_norm = path::join(&src_comps);
    let mut final_comps: Vec<&str> = dst_comps.clone();
    let dst_norm = path::join(&dst_comps);
    if let Some(existing) = t.ns.lookup(dst)? {
        if existing.id == node.id {
            return Ok(MetaResult::Renamed {
                final_path: src_norm,
            });
        }
        if !existing.is_dir() {
            return Err(NamenodeError::AlreadyExists(path::join(&dst_comps)));
        }
        final_comps.push(src_comps[src_comps.len() - 1]);
    }
    let final_path = path::join(&final_comps);
    if final_comps == src_comps {
        // Into its own parent directory: already there.
        return Ok(MetaResult::Renamed {
            final_path: src_norm,
        });
    }
    if final_comps.len() > src_comps.len() && final_comps[..src_comps.len()] == src_comps[..] {
        return Err(NamenodeError::InvalidArgument(format!(
            "cannot move {src_norm} into its own subtree {dst_norm}"
        )));
    }
    if t.ns.lookup(&final_path)?.is_some() {
        return Err(NamenodeError::AlreadyExists(final_path));
    }
    let parent = existing_dir(t, &final_comps[..final_comps.len() - 1])?;
    check_move_depth(t.ns, &node, &src_comps, &final_comps)?;
    move_node(t, node, &parent, final_comps[final_comps.len() - 1], now_ms)?;
    Ok(MetaResult::Renamed { final_path })
}

/// Refuses a move that would put an entry more than [`path::MAX_DEPTH`]
/// components deep, where no path can name it (`ls -R` would fail there).
/// Checked in apply: it depends only on the op and the replicated tree.
/// Only a directory moved deeper than it was is walked: a move no deeper
/// adds no depth, so it stays cheap, and a tree built too deep before
/// this rule can still be moved up.
fn check_move_depth(ns: &Namespace, node: &Inode, src: &[&str], dst: &[&str]) -> Result<()> {
    let depth = dst.len();
    let cap = path::MAX_DEPTH.saturating_sub(depth);
    let height = if node.is_dir() && depth > src.len() {
        subtree_height(ns, node, cap)?
    } else {
        0
    };
    if !path::move_exceeds_depth(depth, height) {
        return Ok(());
    }
    let (src, dst) = (path::join(src), path::join(dst));
    let max = path::MAX_DEPTH;
    Err(NamenodeError::InvalidArgument(if height == 0 {
        format!("cannot move {src} to {dst}: that path has {depth} components, more than {max}")
    } else {
        let at_least = if height > cap { "at least " } else { "" };
        format!(
            "cannot move {src} to {dst}: {dst} would be {depth} components deep with \
             {at_least}{height} levels below it, more than {max} components in all"
        )
    }))
}

/// The height of the subtree at `root` (0: a file or an empty directory),
/// walking its directories page by page; the walk stops at `cap + 1`, as
/// soon as the height is known to exceed `cap`.
fn subtree_height(ns: &Namespace, root: &Inode, cap: usize) -> Result<usize> {
    let mut height = 0;
    // Depth first: a deep chain is found before a wide level is listed.
    let mut dirs = vec![(root.id, 0)];
    while let Some((dir, depth)) = dirs.pop() {
        let mut after = String::new();
        loop {
            let (kids, more) = ns.children(dir, &after, 1024)?;
            let Some(last) = kids.last() else { break };
            height = height.max(depth + 1);
            if height > cap {
                return Ok(height);
            }
            dirs.extend(
                kids.iter()
                    .filter(|k| k.is_dir())
                    .map(|k| (k.id, depth + 1)),
            );
            if !more {
                break;
            }
            after = last.name.clone();
        }
    }
    Ok(height)
}

/// The directory at `comps`, which must exist: where a rename moves to.
fn existing_dir(t: &Txn, comps: &[&str]) -> Result<Inode> {
    let r = t.ns.resolve(comps)?;
    if !r.complete {
        return Err(NamenodeError::NotFound(path::join(comps)));
    }
    let dir = r.inodes.last().expect("root").clone();
    if !dir.is_dir() {
        return Err(NamenodeError::NotDirectory(path::join(comps)));
    }
    Ok(dir)
}

/// Moves `node` into `parent` as `name`; both directories' mtimes move.
fn move_node(t: &mut Txn, mut node: Inode, parent: &Inode, name: &str, now_ms: u64) -> Result<()> {
    let old_parent = node.parent;
    t.unlink(&node);
    node.parent = parent.id;
    node.name = name.to_string();
    t.put_inode(&node);
    t.link(&node);
    touch_dir(t, old_parent, now_ms)?;
    if parent.id != old_parent {
        touch_dir(t, parent.id, now_ms)?;
    }
    Ok(())
}

/// See [`MetaOp::RenameOverwrite`]. As HDFS `rename2`: a file replaces
/// only a file, a directory only an empty directory; the destination's
/// parent must exist. A file still being written is not replaced (its
/// writer would lose it), as `create` with overwrite does not.
fn rename_overwrite(t: &mut Txn, src: &str, dst: &str, now_ms: u64) -> Result<MetaResult> {
    let src_comps = path::components(src)?;
    let dst_comps = path::components(dst)?;
    if src_comps.is_empty() {
        return Err(NamenodeError::InvalidArgument(
            "cannot rename the root directory".into(),
        ));
    }
    let (src_norm, dst_norm) = (path::join(&src_comps), path::join(&dst_comps));
    if dst_comps.is_empty() {
        return Err(NamenodeError::InvalidArgument(
            "cannot replace the root directory".into(),
        ));
    }
    if dst_comps.starts_with(&src_comps) {
        return Err(NamenodeError::InvalidArgument(if dst_comps == src_comps {
            format!("cannot replace {src_norm} with itself")
        } else {
            format!("cannot move {src_norm} into its own subtree {dst_norm}")
        }));
    }
    let node = t.ns.get(&src_norm)?;
    let parent = existing_dir(t, &dst_comps[..dst_comps.len() - 1])?;
    let mut replaced_blocks = Vec::new();
    if let Some(existing) = t.ns.lookup(&dst_norm)? {
        match (&node.file, &existing.file) {
            (Some(_), None) => return Err(NamenodeError::IsDirectory(dst_norm)),
            (None, Some(_)) => return Err(NamenodeError::NotDirectory(dst_norm)),
            (None, None) => {
                if !t.ns.children(existing.id, "", 1)?.0.is_empty() {
                    return Err(NamenodeError::NotEmpty(dst_norm));
                }
            }
            (Some(_), Some(f)) => {
                if let Some(w) = &f.writer {
                    return Err(NamenodeError::LeaseConflict {
                        path: dst_norm,
                        holder: w.clone(),
                    });
                }
                replaced_blocks = f.blocks.clone();
            }
        }
        // The source's new link takes the same name in the same op.
        t.unlink(&existing);
        t.remove_inode(&existing);
    }
    check_move_depth(t.ns, &node, &src_comps, &dst_comps)?;
    move_node(t, node, &parent, dst_comps[dst_comps.len() - 1], now_ms)?;
    Ok(MetaResult::RenamedOverwriting {
        final_path: dst_norm,
        replaced_blocks,
    })
}
