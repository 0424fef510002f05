//! SPDY/3.1 flow-control accounting: how much a side may still send on a stream (or the
//! whole session), and when the receiver grants more with WINDOW_UPDATE.

/// The window every stream and the session start with (SPDY/3.1: 64 KiB).
pub const INITIAL_WINDOW: u32 = 64 * 1024;

/// The largest a window may grow (31 bits).
pub const MAX_WINDOW: i64 = 0x7fff_ffff;

/// What we may still send. It can go negative when the peer shrinks the initial window
/// with SETTINGS while data is in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendWindow {
    available: i64,
}

/// A WINDOW_UPDATE that would grow a window past 2^31 - 1 (a FLOW_CONTROL_ERROR).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("window update of {delta} overflows a window of {available}")]
pub struct Overflow {
    /// The window before the update.
    pub available: i64,
    /// The update.
    pub delta: u32,
}

impl SendWindow {
    /// A window of `size` bytes.
    pub fn new(size: u32) -> SendWindow {
        SendWindow {
            available: i64::from(size),
        }
    }

    /// Bytes that may be sent now.
    pub fn available(&self) -> usize {
        self.available.max(0) as usize
    }

    /// Record `n` bytes sent.
    pub fn spend(&mut self, n: usize) {
        self.available -= n as i64;
    }

    /// A WINDOW_UPDATE from the peer.
    pub fn grant(&mut self, delta: u32) -> Result<(), Overflow> {
        let grown = self.available + i64::from(delta);
        if grown > MAX_WINDOW {
            return Err(Overflow {
                available: self.available,
                delta,
            });
        }
        self.available = grown;
        Ok(())
    }

    /// The peer changed the initial window by `delta` (SETTINGS): every open stream's
    /// window moves by the same amount.
    pub fn shift(&mut self, delta: i64) {
        self.available = (self.available + delta).min(MAX_WINDOW);
    }
}

/// What the peer may still send us, and what we have consumed but not yet granted back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecvWindow {
    size: u32,
    available: i64,
    consumed: u32,
}

impl RecvWindow {
    /// A window of `size` bytes.
    pub fn new(size: u32) -> RecvWindow {
        RecvWindow {
            size,
            available: i64::from(size),
            consumed: 0,
        }
    }

    /// `n` bytes arrived; false if the peer sent past the window. (Kubernetes' own
    /// SPDY library ignores windows, so a caller only notes this.)
    pub fn receive(&mut self, n: usize) -> bool {
        self.available -= n as i64;
        self.available >= 0
    }

    /// `n` bytes were consumed by the reader: the delta to grant back in a
    /// WINDOW_UPDATE, once at least half the window is waiting to be granted (fewer,
    /// larger updates; the sender still has half a window to go on with).
    pub fn consume(&mut self, n: usize) -> Option<u32> {
        self.consumed = self
            .consumed
            .saturating_add(n.min(u32::MAX as usize) as u32);
        if self.consumed < self.size / 2 {
            return None;
        }
        let delta = std::mem::take(&mut self.consumed);
        self.available += i64::from(delta);
        Some(delta)
    }

    /// Bytes the peer may still send.
    pub fn available(&self) -> i64 {
        self.available
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sending_spends_and_updates_grant() {
        let mut window = SendWindow::new(INITIAL_WINDOW);
        window.spend(60_000);
        assert_eq!(window.available(), 5_536);
        window.spend(5_536);
        assert_eq!(window.available(), 0);
        window.grant(1_000).unwrap();
        assert_eq!(window.available(), 1_000);
        // SETTINGS shrinking the initial window can leave it negative: nothing to send
        // until updates make up for it.
        window.shift(-3_000);
        assert_eq!(window.available(), 0);
        window.grant(2_500).unwrap();
        assert_eq!(window.available(), 500);
        let err = window.grant(0x7fff_ffff).unwrap_err();
        assert_eq!(err.delta, 0x7fff_ffff);
        assert_eq!(window.available(), 500, "a refused update changes nothing");
    }

    #[test]
    fn receiving_grants_back_in_half_windows() {
        let mut window = RecvWindow::new(INITIAL_WINDOW);
        assert!(window.receive(40_000));
        assert_eq!(window.consume(20_000), None);
        assert_eq!(window.consume(12_767), None);
        assert_eq!(window.consume(1), Some(32_768));
        assert_eq!(window.available(), INITIAL_WINDOW as i64 - 40_000 + 32_768);
        assert!(window.receive(58_304));
        assert!(!window.receive(1), "past the window");
        assert_eq!(window.consume(65_536), Some(65_536));
    }
}
