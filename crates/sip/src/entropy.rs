//! The random numbers of the protocol machines — tags, branches, nonce salts, keys — from
//! one seed, so that a run of the daemon's core can be replayed exactly.
//!
//! The generator is a cryptographic one (ChaCha, `rand`'s `StdRng`): what it makes must be
//! unguessable to peers (tags, nonces, the nonce key), which holds as long as the seed is
//! secret. The daemon seeds it from the operating system at start; tests and replays seed
//! it with a value of their own.

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

/// A seeded source of random numbers.
#[derive(Debug)]
pub struct Entropy(StdRng);

impl Entropy {
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Entropy(StdRng::from_seed(seed))
    }

    /// A seed from the operating system's generator.
    pub fn os_seed() -> [u8; 32] {
        rand::random()
    }

    /// An independent generator for a part of the machine, derived from this one (so it is
    /// as replayable as its parent).
    pub fn fork(&mut self) -> Entropy {
        Entropy::from_seed(self.0.random())
    }

    pub fn u64(&mut self) -> u64 {
        self.0.random()
    }

    /// A number from 0 to `max`, both included, every one as likely.
    pub fn up_to(&mut self, max: u64) -> u64 {
        self.0.random_range(0..=max)
    }

    pub fn key(&mut self) -> [u8; 32] {
        self.0.random()
    }

    /// A tag or other unguessable token: 16 hex digits (RFC 3261 §19.3 asks 32 random bits
    /// at least).
    pub fn token(&mut self) -> String {
        format!("{:016x}", self.u64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_seed_one_sequence() {
        let (mut a, mut b) = (Entropy::from_seed([1; 32]), Entropy::from_seed([1; 32]));
        let (ta, tb) = (a.token(), b.token());
        assert_eq!(ta, tb);
        assert_eq!(ta.len(), 16);
        assert_eq!(a.fork().u64(), b.fork().u64());
        assert_eq!(a.key(), b.key());
        let mut c = Entropy::from_seed([2; 32]);
        assert_ne!(c.token(), Entropy::from_seed([1; 32]).token());
        // Successive values differ.
        assert_ne!(a.token(), a.token());
        assert_ne!(Entropy::os_seed(), Entropy::os_seed());
        assert_eq!(a.up_to(0), 0);
        assert!((0..100).all(|_| a.up_to(3) <= 3));
        let (mut x, mut y) = (Entropy::from_seed([3; 32]), Entropy::from_seed([3; 32]));
        assert_eq!(x.up_to(1000), y.up_to(1000));
    }
}
