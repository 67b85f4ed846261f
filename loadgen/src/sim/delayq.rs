//! A queue of items due at given times. Items whose due times come in order (a fixed delay) go to a
//! FIFO at O(1); the rest (a random delay) go to a binary heap. Popping takes the earlier head.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, VecDeque};
use std::time::Instant;

struct HeapItem<T> {
    due: Instant,
    order: u64,
    item: T,
}

impl<T> PartialEq for HeapItem<T> {
    fn eq(&self, o: &Self) -> bool {
        self.due == o.due && self.order == o.order
    }
}
impl<T> Eq for HeapItem<T> {}
impl<T> PartialOrd for HeapItem<T> {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl<T> Ord for HeapItem<T> {
    // Reversed: BinaryHeap is a max-heap and we want the earliest first.
    fn cmp(&self, o: &Self) -> Ordering {
        o.due.cmp(&self.due).then(o.order.cmp(&self.order))
    }
}

/// Items due at instants; unbounded by itself, the owner checks [`DelayQueue::len`].
pub struct DelayQueue<T> {
    fifo: VecDeque<(Instant, T)>,
    heap: BinaryHeap<HeapItem<T>>,
    order: u64,
}

impl<T> Default for DelayQueue<T> {
    fn default() -> Self {
        DelayQueue { fifo: VecDeque::new(), heap: BinaryHeap::new(), order: 0 }
    }
}

impl<T> DelayQueue<T> {
    /// Queues `item` for `due`.
    pub fn push(&mut self, due: Instant, item: T) {
        match self.fifo.back() {
            Some((last, _)) if due < *last => {
                self.order += 1;
                self.heap.push(HeapItem { due, order: self.order, item });
            }
            _ => self.fifo.push_back((due, item)),
        }
    }

    /// The earliest due time.
    pub fn next_due(&self) -> Option<Instant> {
        match (self.fifo.front(), self.heap.peek()) {
            (Some((a, _)), Some(b)) => Some((*a).min(b.due)),
            (Some((a, _)), None) => Some(*a),
            (None, Some(b)) => Some(b.due),
            (None, None) => None,
        }
    }

    /// Takes the earliest item if it is due at `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<T> {
        let fifo_due = self.fifo.front().map(|f| f.0);
        let heap_due = self.heap.peek().map(|h| h.due);
        match (fifo_due, heap_due) {
            (Some(a), Some(b)) if b < a => (b <= now).then(|| self.heap.pop().map(|h| h.item)).flatten(),
            (Some(a), _) => (a <= now).then(|| self.fifo.pop_front().map(|f| f.1)).flatten(),
            (None, Some(b)) => (b <= now).then(|| self.heap.pop().map(|h| h.item)).flatten(),
            (None, None) => None,
        }
    }

    /// Items queued.
    pub fn len(&self) -> usize {
        self.fifo.len() + self.heap.len()
    }

    /// Whether nothing is queued.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn pops_in_due_order_whatever_the_push_order() {
        // Goal: mixed in-order and out-of-order pushes come out by due time, only when due.
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut q = DelayQueue::default();
        for (d, v) in [(10, 'a'), (20, 'b'), (5, 'c'), (30, 'd'), (15, 'e')] {
            q.push(ms(d), v);
        }
        assert_eq!(q.next_due(), Some(ms(5)));
        assert_eq!(q.pop_due(ms(4)), None);
        let mut got = Vec::new();
        while let Some(v) = q.pop_due(ms(100)) {
            got.push(v);
        }
        assert_eq!(got, ['c', 'a', 'e', 'b', 'd']);
        assert!(q.is_empty());
    }
}
