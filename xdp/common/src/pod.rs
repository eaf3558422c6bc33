//! The `aya::Pod` impls userspace needs to read and write the maps (feature `user`). `Pod` is
//! an unsafe trait (any bit pattern must be a valid value), so this is the crate's one module
//! that allows `unsafe`.
#![allow(unsafe_code)]

use crate::{
    syncookie::SynCookieConfig, ActionStats, FlowDrop, FlowKey, FlowStats, ShieldLimits, SynBudget, SynSource,
};

// SAFETY: ActionStats is #[repr(C)], made of two u64 with no padding, valid for any bit pattern.
unsafe impl aya::Pod for ActionStats {}
// SAFETY: #[repr(C)] of u32/u16/u8 fields laid out without implicit padding (16 bytes), valid for
// any bit pattern.
unsafe impl aya::Pod for FlowKey {}
// SAFETY: #[repr(C)] of u64 then u32 fields, 72 bytes with no padding, valid for any bit pattern.
unsafe impl aya::Pod for FlowStats {}
// SAFETY: #[repr(C)] u64 + two u32, no padding, valid for any bit pattern.
unsafe impl aya::Pod for FlowDrop {}
// SAFETY: #[repr(C)] u64 + two u32, no padding, valid for any bit pattern.
unsafe impl aya::Pod for SynSource {}
// SAFETY: #[repr(C)] one u64, valid for any bit pattern.
unsafe impl aya::Pod for SynBudget {}
// SAFETY: #[repr(C)] of six u64, no padding, valid for any bit pattern.
unsafe impl aya::Pod for ShieldLimits {}
// SAFETY: #[repr(C)] two u64, a u32, two u16 and eight u8 (32 bytes, no padding), valid for any bit pattern.
unsafe impl aya::Pod for SynCookieConfig {}
