//! The table of live transactions: numbered slots, found by index rather than by hashing.
//!
//! A transaction's id names its slot and the slot's generation, so an id outlives its
//! transaction harmlessly: once the slot is reused the generation differs and the old id
//! finds nothing. The slots sit in fixed-size chunks that are never moved, so the table
//! grows by one chunk at a time (no doubling that copies every entry and stalls the core
//! thread while tens of seconds' worth of transactions are alive), and a freed slot is
//! reused first (its memory is still warm).

/// Slots per chunk: 4096 boxed entries, 64 KiB a chunk.
const CHUNK: usize = 4096;

struct Slot<T> {
    /// Bumped every time the slot is freed; part of the ids handed out for it.
    generation: u32,
    value: Option<Box<T>>,
}

pub(super) struct Slots<T> {
    chunks: Vec<Box<[Slot<T>]>>,
    /// Indexes of the free slots; the last freed is reused first.
    free: Vec<u32>,
    len: usize,
}

impl<T> Default for Slots<T> {
    fn default() -> Self {
        Slots {
            chunks: Vec::new(),
            free: Vec::new(),
            len: 0,
        }
    }
}

/// An id packs the slot's generation (high half) and index (low half).
fn split(id: u64) -> (u32, usize) {
    ((id >> 32) as u32, (id & 0xffff_ffff) as usize)
}

fn join(generation: u32, index: usize) -> u64 {
    (u64::from(generation) << 32) | index as u64
}

impl<T> Slots<T> {
    pub(super) fn len(&self) -> usize {
        self.len
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn slot(&self, index: usize) -> Option<&Slot<T>> {
        self.chunks.get(index / CHUNK).map(|c| &c[index % CHUNK])
    }

    fn slot_mut(&mut self, index: usize) -> Option<&mut Slot<T>> {
        self.chunks
            .get_mut(index / CHUNK)
            .map(|c| &mut c[index % CHUNK])
    }

    /// Stores `value` and returns its id. `None` only when all 2^32 slots are taken.
    pub(super) fn insert(&mut self, value: T) -> Option<u64> {
        let index = match self.free.pop() {
            Some(i) => i as usize,
            None => {
                let next = self.chunks.len() * CHUNK;
                if next + CHUNK > u32::MAX as usize + 1 {
                    return None;
                }
                let chunk: Box<[Slot<T>]> = (0..CHUNK)
                    .map(|_| Slot {
                        generation: 1,
                        value: None,
                    })
                    .collect();
                self.chunks.push(chunk);
                // Hand out the new chunk's slots lowest first.
                self.free
                    .extend((next + 1..next + CHUNK).rev().map(|i| i as u32));
                next
            }
        };
        let slot = self.slot_mut(index)?;
        slot.value = Some(Box::new(value));
        let id = join(slot.generation, index);
        self.len += 1;
        Some(id)
    }

    pub(super) fn get(&self, id: u64) -> Option<&T> {
        let (generation, index) = split(id);
        let slot = self.slot(index)?;
        if slot.generation != generation {
            return None;
        }
        slot.value.as_deref()
    }

    pub(super) fn get_mut(&mut self, id: u64) -> Option<&mut T> {
        let (generation, index) = split(id);
        let slot = self.slot_mut(index)?;
        if slot.generation != generation {
            return None;
        }
        slot.value.as_deref_mut()
    }

    pub(super) fn contains(&self, id: u64) -> bool {
        self.get(id).is_some()
    }

    pub(super) fn remove(&mut self, id: u64) -> Option<Box<T>> {
        let (generation, index) = split(id);
        let slot = self.slot_mut(index)?;
        if slot.generation != generation {
            return None;
        }
        let value = slot.value.take()?;
        // Generation 0 is never handed out, so no id made before the wrap matches.
        slot.generation = slot.generation.checked_add(1).unwrap_or(1);
        self.free.push(index as u32);
        self.len -= 1;
        Some(value)
    }

    /// Every live entry with its id, in slot order.
    pub(super) fn iter(&self) -> impl Iterator<Item = (u64, &T)> {
        self.chunks.iter().enumerate().flat_map(|(c, chunk)| {
            chunk.iter().enumerate().filter_map(move |(i, slot)| {
                slot.value
                    .as_deref()
                    .map(|v| (join(slot.generation, c * CHUNK + i), v))
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_outlive_their_entries_harmlessly() {
        let mut s = Slots::default();
        let a = s.insert("a").unwrap();
        let b = s.insert("b").unwrap();
        assert_ne!(a, b);
        assert_eq!(s.get(a), Some(&"a"));
        assert_eq!(s.remove(a).as_deref(), Some(&"a"));
        assert_eq!(s.get(a), None);
        assert_eq!(s.remove(a), None);
        // The freed slot is reused, under a new id.
        let c = s.insert("c").unwrap();
        assert_eq!(split(c).1, split(a).1);
        assert_ne!(c, a);
        assert_eq!(s.get(a), None);
        assert_eq!(s.get(c), Some(&"c"));
        assert_eq!(s.len(), 2);
        assert_eq!(s.get(u64::MAX), None);
    }

    #[test]
    fn grows_by_chunks_and_iterates_everything_live() {
        let mut s = Slots::default();
        let ids: Vec<u64> = (0..CHUNK * 2 + 5).map(|i| s.insert(i).unwrap()).collect();
        assert_eq!(s.chunks.len(), 3);
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(s.get(*id), Some(&i));
            if i % 3 == 0 {
                s.remove(*id);
            }
        }
        let live: Vec<usize> = s
            .iter()
            .map(|(id, v)| {
                assert_eq!(s.get(id), Some(v));
                *v
            })
            .collect();
        let expected: Vec<usize> = (0..CHUNK * 2 + 5).filter(|i| i % 3 != 0).collect();
        assert_eq!(live, expected);
        assert_eq!(s.len(), expected.len());
        *s.get_mut(ids[1]).unwrap() = 7;
        assert_eq!(s.get(ids[1]), Some(&7));
    }

    proptest::proptest! {
        /// Against a map kept beside it: every live id finds its value, no stale one does.
        #[test]
        fn agrees_with_a_map(ops in proptest::collection::vec(0u8..3, 1..400)) {
            let mut s = Slots::default();
            let mut model = std::collections::HashMap::new();
            let mut dead = Vec::new();
            for (n, op) in ops.into_iter().enumerate() {
                match op {
                    0 | 1 => {
                        let id = s.insert(n).unwrap();
                        proptest::prop_assert!(model.insert(id, n).is_none());
                    }
                    _ => {
                        if let Some(&id) = model.keys().next() {
                            proptest::prop_assert_eq!(s.remove(id).map(|b| *b), model.remove(&id));
                            dead.push(id);
                        }
                    }
                }
                proptest::prop_assert_eq!(s.len(), model.len());
            }
            for (id, v) in &model {
                proptest::prop_assert_eq!(s.get(*id), Some(v));
            }
            for id in dead {
                proptest::prop_assert_eq!(s.get(id), None);
            }
        }
    }
}
