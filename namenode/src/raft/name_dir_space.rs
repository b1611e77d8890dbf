//! Free space on the members' name dirs, against the reserve each keeps
//! (`name_dir_reserved_mib`, HDFS's `dfs.namenode.resource.du.reserved`).
//!
//! Each member measures its own name dir every raft tick (one `statvfs`)
//! and says whether it is below its reserve in every raft batch it sends
//! (`RaftBatch.low_on_disk`). A leader learns the others' state from the
//! batches they send it (every heartbeat is answered), and reads it when
//! it chooses whom to hand leadership to (`handover.rs`). A member not
//! heard from yet counts as low: nothing is known of its room.
//!
//! Not here: what a low leader does (`node.rs`).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

pub struct NameDirSpace {
    dir: PathBuf,
    /// Bytes the name dir must keep free; 0 turns the check off.
    reserved: u64,
    free: AtomicU64,
    low: AtomicBool,
    /// What each member (by raft id, from 1) last said of itself.
    peers_low: Vec<AtomicBool>,
    /// The last measurement failed (logged once until one succeeds).
    failing: AtomicBool,
}

impl NameDirSpace {
    /// For the name dir `dir` of a group of `members`; nothing measured
    /// yet (this member counts as having room until [`Self::measure`]).
    pub fn new(dir: PathBuf, reserved: u64, members: usize) -> NameDirSpace {
        NameDirSpace {
            dir,
            reserved,
            free: AtomicU64::new(u64::MAX),
            low: AtomicBool::new(false),
            peers_low: (0..members).map(|_| AtomicBool::new(true)).collect(),
            failing: AtomicBool::new(false),
        }
    }

    /// Measures the name dir; whether it is below the reserve now. A
    /// failed measurement keeps the last answer: the writes that matter
    /// fail loudly by themselves (`node.rs` stops the member).
    pub fn measure(&self) -> bool {
        match rustix::fs::statvfs(&self.dir) {
            Ok(st) => {
                self.failing.store(false, Ordering::Relaxed);
                let free = st.f_bavail.saturating_mul(st.f_frsize);
                self.free.store(free, Ordering::Relaxed);
                let low = self.reserved > 0 && free < self.reserved;
                let was = self.low.swap(low, Ordering::Relaxed);
                if low && !was {
                    tracing::warn!(
                        "name dir {} has {} free, below its reserve of {}: this member \
                         hands leadership to a member with room, or refuses changes while \
                         none has",
                        self.dir.display(),
                        mib(free),
                        mib(self.reserved)
                    );
                } else if was && !low {
                    tracing::info!(
                        "name dir {} has {} free again (reserve {})",
                        self.dir.display(),
                        mib(free),
                        mib(self.reserved)
                    );
                }
            }
            Err(e) => {
                if !self.failing.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        "cannot measure free space on name dir {}: {e}",
                        self.dir.display()
                    );
                }
            }
        }
        self.low()
    }

    /// This member's name dir was below its reserve when last measured.
    pub fn low(&self) -> bool {
        self.low.load(Ordering::Relaxed)
    }

    /// Free bytes at the last measurement (`u64::MAX` before the first).
    pub fn free_bytes(&self) -> u64 {
        self.free.load(Ordering::Relaxed)
    }

    pub fn reserved_bytes(&self) -> u64 {
        self.reserved
    }

    /// Records what member `id` said of its name dir.
    pub fn set_peer_low(&self, id: u64, low: bool) {
        if let Some(p) = slot(&self.peers_low, id) {
            p.store(low, Ordering::Relaxed);
        }
    }

    /// Member `id`'s name dir is low, or it has not said yet.
    pub fn peer_low(&self, id: u64) -> bool {
        slot(&self.peers_low, id).is_none_or(|p| p.load(Ordering::Relaxed))
    }
}

fn slot(peers: &[AtomicBool], id: u64) -> Option<&AtomicBool> {
    peers.get(usize::try_from(id.checked_sub(1)?).ok()?)
}

/// `bytes` in MiB with one decimal, for messages.
pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reserve_decides_and_silent_members_count_as_low() {
        let dir = tempfile::tempdir().unwrap();
        let roomy = NameDirSpace::new(dir.path().to_path_buf(), 1, 3);
        assert!(!roomy.measure(), "a temp dir has a byte free");
        assert!(roomy.free_bytes() > 0 && roomy.free_bytes() < u64::MAX);
        let off = NameDirSpace::new(dir.path().to_path_buf(), 0, 3);
        assert!(!off.measure(), "a reserve of 0 is never short");
        let cramped = NameDirSpace::new(dir.path().to_path_buf(), u64::MAX, 3);
        assert!(cramped.measure(), "no disk has u64::MAX bytes free");
        // A name dir that cannot be measured keeps the last answer.
        let gone = NameDirSpace::new(dir.path().join("missing"), u64::MAX, 3);
        assert!(!gone.measure());

        assert!(roomy.peer_low(2), "not heard from yet");
        roomy.set_peer_low(2, false);
        assert!(!roomy.peer_low(2));
        roomy.set_peer_low(2, true);
        assert!(roomy.peer_low(2));
        roomy.set_peer_low(9, false);
        assert!(roomy.peer_low(9) && roomy.peer_low(0), "no such member");
    }
}
