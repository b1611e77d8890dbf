//! Whom a leader that should not lead hands leadership to: a witness that
//! won an election (it serves nothing), or a full member whose name dir is
//! below its reserve (`name_dir_space.rs`).
//!
//! Only full members that answer (raft-rs's `recent_active`) and hold
//! some of the log qualify; raft-rs catches the chosen one up before it
//! hands over. Not here: when to hand over (`node.rs`).

/// A member that could take over, as the leader sees it.
#[derive(Debug, Clone, Copy)]
pub struct Candidate {
    pub id: u64,
    /// Heard from within the last election timeout.
    pub active: bool,
    /// How much of the leader's log it holds.
    pub matched: u64,
    /// Its name dir is below its reserve (or it has not said).
    pub low_on_disk: bool,
}

/// The member to hand leadership to, or `None`. With `need_room` (the
/// leader itself is low on disk) only members with room qualify: handing
/// over to one as low gains nothing. Without it (a witness leads, and
/// anyone full is better) members with room come first. Among equals, the
/// most caught up.
pub fn successor(candidates: impl IntoIterator<Item = Candidate>, need_room: bool) -> Option<u64> {
    candidates
        .into_iter()
        .filter(|c| c.active && c.matched > 0 && !(need_room && c.low_on_disk))
        .max_by_key(|c| (!c.low_on_disk, c.matched))
        .map(|c| c.id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(id: u64, active: bool, matched: u64, low_on_disk: bool) -> Candidate {
        Candidate {
            id,
            active,
            matched,
            low_on_disk,
        }
    }

    #[test]
    fn a_leader_low_on_disk_picks_only_a_member_with_room() {
        let all = [c(2, true, 90, true), c(3, true, 50, false)];
        assert_eq!(successor(all, true), Some(3));
        assert_eq!(successor([c(2, true, 90, true)], true), None);
        // Silent or empty members do not qualify.
        assert_eq!(successor([c(3, false, 50, false)], true), None);
        assert_eq!(successor([c(3, true, 0, false)], true), None);
    }

    #[test]
    fn a_witness_prefers_room_then_the_most_caught_up_but_takes_anyone() {
        let all = [
            c(1, true, 90, true),
            c(2, true, 50, false),
            c(3, true, 70, false),
        ];
        assert_eq!(successor(all, false), Some(3));
        assert_eq!(
            successor([c(1, true, 90, true), c(2, true, 95, true)], false),
            Some(2)
        );
        assert_eq!(successor([], false), None);
    }
}
