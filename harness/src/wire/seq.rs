//! Wrap-aware TCP sequence numbers (RFC 9293 §3.4: arithmetic is modulo 2^32).

use std::cmp::Ordering;
use std::fmt;
use std::ops::{Add, Sub};

use serde::{Deserialize, Serialize};

/// A TCP sequence number. Ordering compares by wrapping difference, so `SeqNumber(u32::MAX) < SeqNumber(0)`;
/// raw `u32`s are never compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct SeqNumber(pub u32);

impl SeqNumber {
    pub fn wrapping_add(self, n: u32) -> SeqNumber {
        SeqNumber(self.0.wrapping_add(n))
    }
    /// `self - base` as a distance in bytes (may be negative when `self` is before `base`).
    pub fn distance_from(self, base: SeqNumber) -> i64 {
        (self - base) as i64
    }
}

impl Add<u32> for SeqNumber {
    type Output = SeqNumber;
    fn add(self, n: u32) -> SeqNumber {
        self.wrapping_add(n)
    }
}

impl Sub for SeqNumber {
    type Output = i32;
    /// The signed wrapping difference.
    fn sub(self, other: SeqNumber) -> i32 {
        self.0.wrapping_sub(other.0) as i32
    }
}

impl PartialOrd for SeqNumber {
    fn partial_cmp(&self, other: &SeqNumber) -> Option<Ordering> {
        Some((*self - *other).cmp(&0))
    }
}

impl fmt::Display for SeqNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordering_wraps() {
        assert!(SeqNumber(u32::MAX) < SeqNumber(0));
        assert!(SeqNumber(10) > SeqNumber(u32::MAX - 10));
        assert_eq!(SeqNumber(u32::MAX) + 2, SeqNumber(1));
        assert_eq!(SeqNumber(1) - SeqNumber(u32::MAX), 2);
        assert_eq!(SeqNumber(u32::MAX) - SeqNumber(1), -2);
    }
}
