//! A bounded single-core queue with one waiting task: how events reach a session's task.
//! Not `Send`: it never leaves its core. Full is an answer (`Err(item)`), never a drop.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::task::Waker;

/// Queue of events for one task on this core.
pub struct Mailbox<T> {
    items: RefCell<VecDeque<T>>,
    cap: usize,
    waker: Cell<Option<Waker>>,
    closed: Cell<bool>,
}

impl<T> std::fmt::Debug for Mailbox<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailbox").field("len", &self.len()).field("cap", &self.cap).finish()
    }
}

impl<T> Mailbox<T> {
    /// A mailbox holding at most `cap` items.
    pub fn new(cap: usize) -> Mailbox<T> {
        Mailbox {
            items: RefCell::new(VecDeque::new()),
            cap,
            waker: Cell::new(None),
            closed: Cell::new(false),
        }
    }

    /// Queues `item` and wakes the task; hands it back when full or closed.
    pub fn push(&self, item: T) -> Result<(), T> {
        if self.closed.get() {
            return Err(item);
        }
        let mut q = self.items.borrow_mut();
        if q.len() >= self.cap {
            return Err(item);
        }
        q.push_back(item);
        drop(q);
        if let Some(w) = self.waker.take() {
            w.wake();
        }
        Ok(())
    }

    /// Takes everything queued.
    pub fn drain_into(&self, out: &mut Vec<T>) {
        out.extend(self.items.borrow_mut().drain(..));
    }

    /// Whether something is queued; registers `waker` when not.
    pub fn poll_ready(&self, waker: &Waker) -> bool {
        if !self.items.borrow().is_empty() || self.closed.get() {
            return true;
        }
        self.waker.set(Some(waker.clone()));
        false
    }

    /// Number queued.
    pub fn len(&self) -> usize {
        self.items.borrow().len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.items.borrow().is_empty()
    }

    /// Refuses further items and wakes the task so it can finish.
    pub fn close(&self) {
        self.closed.set(true);
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }

    /// Whether [`Mailbox::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.closed.get()
    }
}
