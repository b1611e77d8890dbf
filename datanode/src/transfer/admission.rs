//! Admission of data-transfer connections before their op header.
//!
//! A connection costs a slot of `max_connections` from accept on. One that
//! never sends its op header (a port scanner, a stuck or hostile client)
//! would hold that slot for the idle timeout, and a few hundred of them
//! left nothing for real readers and writers. So a connection gets
//! `op_header_timeout` to send a complete header, and at most
//! `max_pending_headers` connections may be waiting to send one: when one
//! more arrives, the one that has waited longest is closed to make room.
//! Real clients send their header right after connecting, so they are
//! almost never the oldest; a flood of silent connections only evicts
//! itself. There is no per-address cap on purpose: every peer of a test
//! or quickstart cluster is 127.0.0.1, so such a cap would throttle real
//! traffic.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

/// The connections still waiting for their op header, oldest first.
pub struct PendingHeaders {
    cap: usize,
    inner: Mutex<Queue>,
}

struct Queue {
    next_ticket: u64,
    waiting: VecDeque<(u64, oneshot::Sender<()>)>,
}

/// One connection's place in the queue; leaving it (drop) frees the place.
pub struct Ticket {
    id: u64,
    pending: Arc<PendingHeaders>,
}

impl PendingHeaders {
    pub fn new(cap: usize) -> Arc<PendingHeaders> {
        Arc::new(PendingHeaders {
            cap: cap.max(1),
            inner: Mutex::new(Queue {
                next_ticket: 0,
                waiting: VecDeque::new(),
            }),
        })
    }

    /// Queues a new connection, evicting the oldest waiting one when the
    /// queue is full. The receiver completes if this connection is evicted
    /// in turn.
    pub fn enter(self: &Arc<Self>) -> (Ticket, oneshot::Receiver<()>) {
        let (evict, evicted) = oneshot::channel();
        let mut q = self.queue();
        while q.waiting.len() >= self.cap {
            if let Some((_, oldest)) = q.waiting.pop_front() {
                let _ = oldest.send(());
            }
        }
        let id = q.next_ticket;
        q.next_ticket += 1;
        q.waiting.push_back((id, evict));
        drop(q);
        let ticket = Ticket {
            id,
            pending: self.clone(),
        };
        (ticket, evicted)
    }

    /// How many connections wait for their header now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.queue().waiting.len()
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.inner.lock().expect("pending-header queue lock")
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut q = self.pending.queue();
        if let Some(i) = q.waiting.iter().position(|(id, _)| *id == self.id) {
            q.waiting.remove(i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_evicts_its_oldest_connection_only() {
        let pending = PendingHeaders::new(2);
        let (_a, mut a_evicted) = pending.enter();
        let (_b, mut b_evicted) = pending.enter();
        let (_c, mut c_evicted) = pending.enter();
        assert!(a_evicted.try_recv().is_ok(), "the oldest makes room");
        assert!(b_evicted.try_recv().is_err());
        assert!(c_evicted.try_recv().is_err());
        assert_eq!(pending.len(), 2);
    }

    #[test]
    fn a_connection_that_sent_its_header_leaves_the_queue() {
        let pending = PendingHeaders::new(2);
        let (a, _) = pending.enter();
        let (_b, mut b_evicted) = pending.enter();
        drop(a);
        assert_eq!(pending.len(), 1);
        let (_c, _) = pending.enter();
        assert!(b_evicted.try_recv().is_err(), "room was left by a");
    }
}
