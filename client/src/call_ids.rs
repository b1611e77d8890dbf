//! Call ids for non-idempotent namenode calls, and the mark each carries:
//! the number below which this client has had every answer.
//!
//! Every attempt of one call carries the same id, so a namenode that
//! applied an attempt whose answer was lost answers a repeat from its
//! retry cache instead of applying it twice. With the mark
//! (`CallId.answered_below`) the namenodes forget the results below it at
//! once and refuse any stray copy of those calls, instead of keeping every
//! result for the cache's whole expiry (the raft dissertation's client
//! sessions, §6.3). A call counts as answered when its [`Call`] is
//! dropped: after its last attempt, answered or given up, or when its
//! future is dropped.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use rfs_proto::namenode::CallId;

/// Hands out one client's call ids, counting up from 1.
pub(crate) struct CallIds {
    client_id: String,
    open: Arc<Mutex<Open>>,
}

#[derive(Default)]
struct Open {
    /// The last id handed out.
    last: u64,
    /// Ids handed out whose [`Call`] is not dropped yet.
    unanswered: BTreeSet<u64>,
}

impl CallIds {
    pub(crate) fn new(client_id: String) -> CallIds {
        CallIds {
            client_id,
            open: Arc::default(),
        }
    }

    /// A new call: its id, and below it the smallest id still open
    /// (every smaller one was answered).
    pub(crate) fn next(&self) -> Call {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.last += 1;
        let id = open.last;
        open.unanswered.insert(id);
        let answered_below = *open.unanswered.first().expect("holds `id`");
        Call {
            id: CallId {
                client_id: self.client_id.clone(),
                call_id: id,
                answered_below,
            },
            open: self.open.clone(),
        }
    }
}

/// One call in flight: keep it until the call's last attempt is over.
pub(crate) struct Call {
    id: CallId,
    open: Arc<Mutex<Open>>,
}

impl Call {
    /// The id every attempt of this call carries.
    pub(crate) fn id(&self) -> Option<CallId> {
        Some(self.id.clone())
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.unanswered.remove(&self.id.call_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn marks(call: &Call) -> (u64, u64) {
        (call.id.call_id, call.id.answered_below)
    }

    #[test]
    fn the_mark_is_the_oldest_call_still_open() {
        let ids = CallIds::new("c".into());
        let first = ids.next();
        assert_eq!(marks(&first), (1, 1));
        let second = ids.next();
        let third = ids.next();
        assert_eq!(marks(&third), (3, 1), "the first is still open");
        drop(second);
        assert_eq!(
            marks(&ids.next()),
            (4, 1),
            "nor does the second's end move it"
        );
        drop(first);
        // 2 and 4 are over, 3 still open.
        assert_eq!(marks(&ids.next()), (5, 3));
        drop(third);
        assert_eq!(marks(&ids.next()), (6, 6));
        assert_eq!(ids.next().id().unwrap().client_id, "c");
    }
}
