//! A deterministic random number generator for the crate's tests (xorshift64), so that tests
//! that feed many random frames or flows repeat exactly and need no dependency.

/// xorshift64. The seed must not be zero.
pub(crate) struct Xorshift(pub(crate) u64);

impl Xorshift {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}
