//! [`MemoryDevice`]: the harness's `smoltcp` device, in memory.

use smoltcp::{
    phy::{Checksum, Device, DeviceCapabilities, Medium, RxToken, TxToken},
    time::Instant,
};

use super::MTU;

/// An in-memory Ethernet device: one received frame at a time, and every sent frame kept.
pub struct MemoryDevice {
    rx: Vec<u8>,
    has_frame: bool,
    sent: Vec<Vec<u8>>,
    verify_tcp_checksums: bool,
}

pub struct MemoryRxToken<'a> {
    frame: &'a [u8],
}

pub struct MemoryTxToken<'a> {
    sent: &'a mut Vec<Vec<u8>>,
}

impl RxToken for MemoryRxToken<'_> {
    fn consume<R, F>(self, f: F) -> R
    where
        F: FnOnce(&[u8]) -> R,
    {
        f(self.frame)
    }
}

impl TxToken for MemoryTxToken<'_> {
    fn consume<R, F>(self, len: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        assert!(
            len <= MTU,
            "the stack sent a {len}-byte frame, over the {MTU}-byte MTU"
        );
        let mut frame = vec![0; len];
        let result = f(&mut frame);
        self.sent.push(frame);
        result
    }
}

impl Default for MemoryDevice {
    fn default() -> Self {
        MemoryDevice::new()
    }
}

impl MemoryDevice {
    pub fn new() -> MemoryDevice {
        MemoryDevice {
            rx: Vec::with_capacity(MTU),
            has_frame: false,
            sent: Vec::new(),
            verify_tcp_checksums: true,
        }
    }

    /// Puts `frame` in the receive slot (replacing a frame the stack did not take).
    pub fn put_rx(&mut self, frame: &[u8]) {
        self.rx.clear();
        self.rx.extend_from_slice(frame);
        self.has_frame = true;
    }

    /// Whether a frame waits for the stack.
    pub fn has_frame(&self) -> bool {
        self.has_frame
    }

    /// Takes the frames the stack sent since the last call.
    pub fn take_sent(&mut self) -> Vec<Vec<u8>> {
        std::mem::take(&mut self.sent)
    }

    /// Whether the stack is asked to verify received TCP checksums (default: yes).
    pub fn set_verify_tcp_checksums(&mut self, verify: bool) {
        self.verify_tcp_checksums = verify;
    }
}

impl Device for MemoryDevice {
    type RxToken<'a> = MemoryRxToken<'a>;
    type TxToken<'a> = MemoryTxToken<'a>;

    fn receive(&mut self, _timestamp: Instant) -> Option<(MemoryRxToken<'_>, MemoryTxToken<'_>)> {
        if !self.has_frame {
            return None;
        }
        self.has_frame = false;
        Some((
            MemoryRxToken { frame: &self.rx },
            MemoryTxToken { sent: &mut self.sent },
        ))
    }

    fn transmit(&mut self, _timestamp: Instant) -> Option<MemoryTxToken<'_>> {
        Some(MemoryTxToken { sent: &mut self.sent })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = MTU;
        if !self.verify_tcp_checksums {
            caps.checksum.tcp = Checksum::Tx;
        }
        caps
    }
}
