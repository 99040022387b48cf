//! Categorical values as dense codes: the code of a missing value, a fast hasher for data
//! keys, and factorising in order of first appearance. Shared by the readers ([`super::load`],
//! [`super::csv`]) and the fixed-effect index ([`crate::fe::index`]).

use std::collections::HashMap;

/// Code given to a missing value in [`super::load::Table::codes`].
pub const MISSING_CODE: u32 = u32::MAX;

/// A fast non-cryptographic hasher for factorising: FxHash's multiply-rotate per word, then
/// MurmurHash3's 64-bit finaliser so the low bits hashbrown indexes by depend on every input bit
/// (without it, pair keys `a << 32 | b` collide on `b`). Keys are data values, not
/// attacker-controlled, and SipHash dominated the preparation of large panels.
#[derive(Default, Clone, Copy)]
pub struct FastHasher(u64);

impl std::hash::Hasher for FastHasher {
    fn finish(&self) -> u64 {
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(b));
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn write_u32(&mut self, v: u32) {
        self.write_u64(v as u64);
    }
    fn write_i64(&mut self, v: i64) {
        self.write_u64(v as u64);
    }
    fn write_usize(&mut self, v: usize) {
        self.write_u64(v as u64);
    }
    fn write_u8(&mut self, v: u8) {
        self.write_u64(v as u64);
    }
}

pub type FastMap<K, V> = HashMap<K, V, std::hash::BuildHasherDefault<FastHasher>>;

/// Dense codes in order of first appearance.
pub fn factorize<K: std::hash::Hash + Eq>(values: impl Iterator<Item = Option<K>>) -> (Vec<u32>, usize) {
    let mut map: FastMap<K, u32> = FastMap::default();
    let codes = values
        .map(|v| match v {
            None => MISSING_CODE,
            Some(k) => {
                let next = map.len() as u32;
                *map.entry(k).or_insert(next)
            }
        })
        .collect();
    (codes, map.len())
}
