//! A Bloom filter over ICCID keys: which keys were seen, in a fixed number of bits.
//!
//! Guarantees: no false "no" — a key inserted is always found; a false "yes" about as often
//! as the fill allows (with `k` bits a key and a fill `f`, `f^k`); memory is the bits asked
//! for, whatever the number of keys.

use fixedbitset::FixedBitSet;

/// A Bloom filter of `bits` bits with `k` bits a key.
pub(crate) struct Bloom {
    bits: FixedBitSet,
    k: usize,
}

impl Bloom {
    /// `bits` rounded up to a power of two (at least 64).
    pub(crate) fn new(bits: usize, k: usize) -> Self {
        Self {
            bits: FixedBitSet::with_capacity(bits.max(64).next_power_of_two()),
            k: k.max(1),
        }
    }

    fn positions(&self, key: u128) -> impl Iterator<Item = usize> + use<> {
        // splitmix64 over the key's two halves, then double hashing.
        let mix = |mut z: u64| {
            z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        let h = mix(key as u64 ^ mix((key >> 64) as u64));
        let (a, b) = (h as u32 as usize, ((h >> 32) as usize) | 1);
        let mask = self.bits.len() - 1;
        (0..self.k).map(move |i| a.wrapping_add(i.wrapping_mul(b)) & mask)
    }

    /// Inserts `key`; `true` when it (or a key sharing its bits) was there already.
    pub(crate) fn insert(&mut self, key: u128) -> bool {
        let mut there = true;
        for p in self.positions(key) {
            there &= self.bits.put(p);
        }
        there
    }

    pub(crate) fn contains(&self, key: u128) -> bool {
        self.positions(key).all(|p| self.bits.contains(p))
    }

    pub(crate) fn clear(&mut self) {
        self.bits.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_false_no_and_few_false_yes() {
        // 100,000 keys in 4 Mbit with 3 bits a key: a fill of 7 %, about 0.04 % false yes.
        let mut b = Bloom::new(1 << 22, 3);
        let base = 8_944_500_990_000_000_000u128;
        assert!(!b.insert(base));
        assert!(b.insert(base));
        for k in 1..100_000u128 {
            b.insert(base + k * 7);
        }
        assert!((0..100_000u128).all(|k| b.contains(base + k * 7)));
        let false_yes = (0..100_000u128)
            .filter(|k| b.contains(base + 3 + k * 7))
            .count();
        assert!(false_yes < 200, "{false_yes}");
        b.clear();
        assert!(!b.contains(base));
    }
}
