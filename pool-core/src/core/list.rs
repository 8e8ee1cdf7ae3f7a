//! A doubly linked list stored in a slab: O(1) push, pop at both ends and removal by key, and no
//! allocation once the slab has grown to its working size.

use slab::Slab;

const NIL: usize = usize::MAX;

#[derive(Debug)]
struct Link<T> {
    val: T,
    prev: usize,
    next: usize,
    linked: bool,
}

/// The list. Entries may also live in the slab unlinked (see [`List::insert_unlinked`]).
#[derive(Debug)]
pub(crate) struct List<T> {
    slab: Slab<Link<T>>,
    head: usize,
    tail: usize,
    len: usize,
}

impl<T> List<T> {
    pub(crate) fn new() -> Self {
        List {
            slab: Slab::new(),
            head: NIL,
            tail: NIL,
            len: 0,
        }
    }

    /// Linked entries.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub(crate) fn push_back(&mut self, val: T) -> usize {
        let key = self.slab.insert(Link {
            val,
            prev: self.tail,
            next: NIL,
            linked: true,
        });
        if self.tail == NIL {
            self.head = key;
        } else {
            self.slab[self.tail].next = key;
        }
        self.tail = key;
        self.len += 1;
        key
    }

    /// Stores `val` without linking it: it is reachable only by its key.
    pub(crate) fn insert_unlinked(&mut self, val: T) -> usize {
        self.slab.insert(Link {
            val,
            prev: NIL,
            next: NIL,
            linked: false,
        })
    }

    /// Unlinks an entry, leaving it stored.
    pub(crate) fn unlink(&mut self, key: usize) {
        let link = &mut self.slab[key];
        if !link.linked {
            return;
        }
        link.linked = false;
        let (prev, next) = (link.prev, link.next);
        if prev == NIL {
            self.head = next;
        } else {
            self.slab[prev].next = next;
        }
        if next == NIL {
            self.tail = prev;
        } else {
            self.slab[next].prev = prev;
        }
        self.len -= 1;
    }

    /// Unlinks the first entry and returns its key; the entry stays stored.
    pub(crate) fn unlink_front(&mut self) -> Option<usize> {
        let key = self.head;
        if key == NIL {
            return None;
        }
        self.unlink(key);
        Some(key)
    }

    /// Removes an entry, linked or not.
    pub(crate) fn remove(&mut self, key: usize) -> T {
        self.unlink(key);
        self.slab.remove(key).val
    }

    pub(crate) fn pop_back(&mut self) -> Option<T> {
        (self.tail != NIL).then(|| self.remove(self.tail))
    }

    pub(crate) fn front_key(&self) -> Option<usize> {
        (self.head != NIL).then_some(self.head)
    }

    pub(crate) fn next_key(&self, key: usize) -> Option<usize> {
        let next = self.slab[key].next;
        (next != NIL).then_some(next)
    }

    pub(crate) fn get(&self, key: usize) -> Option<&T> {
        self.slab.get(key).map(|l| &l.val)
    }

    pub(crate) fn get_mut(&mut self, key: usize) -> Option<&mut T> {
        self.slab.get_mut(key).map(|l| &mut l.val)
    }

    /// Whether `key` holds a linked entry.
    pub(crate) fn is_linked(&self, key: usize) -> bool {
        self.slab.get(key).is_some_and(|l| l.linked)
    }

    /// Keys of the linked entries, front to back.
    pub(crate) fn keys(&self) -> Vec<usize> {
        let mut out = Vec::with_capacity(self.len);
        let mut k = self.head;
        while k != NIL {
            out.push(k);
            k = self.slab[k].next;
        }
        out
    }

    /// All stored entries, linked or not.
    #[cfg(test)]
    pub(crate) fn stored(&self) -> usize {
        self.slab.len()
    }
}

#[cfg(test)]
mod tests {
    use super::List;

    #[test]
    fn push_pop_remove_keep_order() {
        let mut l = List::new();
        let a = l.push_back('a');
        let b = l.push_back('b');
        let c = l.push_back('c');
        assert_eq!(l.len(), 3);
        assert_eq!(l.remove(b), 'b');
        assert_eq!(l.keys(), vec![a, c]);
        assert_eq!(l.unlink_front(), Some(a));
        assert!(!l.is_linked(a));
        assert_eq!(l.get(a), Some(&'a'));
        assert_eq!(l.len(), 1);
        assert_eq!(l.remove(a), 'a');
        assert_eq!(l.pop_back(), Some('c'));
        assert!(l.is_empty());
        assert_eq!(l.pop_back(), None);
        assert_eq!(l.stored(), 0);
        let u = l.insert_unlinked('u');
        assert_eq!(l.len(), 0);
        assert_eq!(l.remove(u), 'u');
    }

    #[test]
    fn next_key_walks_front_to_back() {
        let mut l = List::new();
        let keys: Vec<_> = (0..5).map(|i| l.push_back(i)).collect();
        let mut walked = vec![];
        let mut k = l.front_key();
        while let Some(key) = k {
            walked.push(key);
            k = l.next_key(key);
        }
        assert_eq!(walked, keys);
    }
}
