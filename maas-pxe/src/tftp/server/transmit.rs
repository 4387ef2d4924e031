//! The sending half of [`Transfer`]: the datagrams of a window written one at a time or a
//! window at once (one vectored read of the file), or described for senders that gather the
//! payloads from the content themselves.

use std::time::Instant;

use super::{DataBlock, State, Transfer, shrank};
use crate::tftp::wire::DATA_HEADER;

/// Room always left for a control packet (an OACK or ERROR is never longer).
const CONTROL_ROOM: usize = 512;

impl Transfer {
    /// Writes the next datagram to send into `buf` (replacing its content) and returns
    /// `true`, or returns `false` when there is nothing to send until the next input.
    ///
    /// `buf` keeps its allocation from call to call: in a steady transfer nothing is
    /// allocated or zero-filled, the block is read straight into it.
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> bool {
        let need = self.max_datagram_len();
        if buf.len() < need {
            buf.resize(need, 0);
        }
        match self.poll_transmit_into(now, buf) {
            Some(n) => {
                buf.truncate(n);
                true
            }
            None => {
                buf.clear();
                false
            }
        }
    }

    /// The largest datagram [`Transfer::poll_transmit_into`] may write: a DATA packet of the
    /// negotiated block size, or a control packet (OACK, ERROR), whichever is longer.
    pub fn max_datagram_len(&self) -> usize {
        let control = self.pending_control.as_ref().map_or(0, Vec::len);
        (DATA_HEADER + usize::from(self.blksize))
            .max(control)
            .max(CONTROL_ROOM)
    }

    /// Writes the next datagram to send at the start of `out` and returns its length, or
    /// `None` when there is nothing to send until the next input. A window is sent by calling
    /// this with successive slices of one buffer (each at least
    /// [`Transfer::max_datagram_len`] long; a shorter one gets nothing and the datagram stays
    /// pending), so a whole window can go out in one system call.
    pub fn poll_transmit_into(&mut self, now: Instant, out: &mut [u8]) -> Option<usize> {
        if out.len() < self.max_datagram_len() {
            return None;
        }
        if let Some(bytes) = self.pending_control.take() {
            out[..bytes.len()].copy_from_slice(&bytes);
            return Some(bytes.len());
        }
        let block = self.next_block()?;
        if block != self.send_from {
            let probe = self.probe_packet();
            out[..DATA_HEADER].copy_from_slice(&probe.header);
            self.mark_probe_sent();
            return Some(DATA_HEADER);
        }
        let offset = (block - 1) * u64::from(self.blksize);
        out[..2].copy_from_slice(&3u16.to_be_bytes());
        out[2..4].copy_from_slice(&(block as u16).to_be_bytes());
        let payload = &mut out[DATA_HEADER..DATA_HEADER + usize::from(self.blksize)];
        let expected = self.payload_len(block);
        let failure = match self.content.read_at(offset, payload) {
            Ok(n) if n >= expected => None,
            Ok(n) => Some(shrank(offset + n as u64)),
            Err(e) => Some(("Read error", e.to_string())),
        };
        if let Some((message, error)) = failure {
            self.fail(now, message, error);
            let bytes = self.pending_control.take().unwrap_or_default();
            out[..bytes.len()].copy_from_slice(&bytes);
            return Some(bytes.len());
        }
        let n = expected;
        self.packets += 1;
        if block <= self.highest_sent {
            self.retransmitted += 1;
        }
        self.highest_sent = self.highest_sent.max(block);
        self.send_from += 1;
        Some(DATA_HEADER + n)
    }

    /// The next DATA block to send: the burst's next block, then its probe.
    fn next_block(&self) -> Option<u64> {
        if self.state != State::Sending {
            None
        } else if self.send_from <= self.window_end {
            Some(self.send_from)
        } else if self.probe {
            Some(self.window_end)
        } else {
            None
        }
    }

    /// The probe ending a narrowed burst: DATA for the block the client last acknowledged,
    /// with no payload. The client already holds that block (it said so), so it can only
    /// take this for a duplicate, which it answers with an ACK of what it holds now; being
    /// empty, it costs the link nothing next to the burst.
    fn probe_packet(&self) -> DataBlock {
        let mut header = [0u8; DATA_HEADER];
        header[..2].copy_from_slice(&3u16.to_be_bytes());
        header[2..].copy_from_slice(&(self.acked as u16).to_be_bytes());
        DataBlock {
            header,
            offset: 0,
            len: 0,
        }
    }

    /// Counts the probe as sent.
    fn mark_probe_sent(&mut self) {
        self.probe = false;
        self.packets += 1;
        self.retransmitted += 1;
    }

    /// Writes as many datagrams as are ready into `out`, one per `stride` bytes (the `i`th at
    /// `i * stride`), and their lengths into `lens` (cleared first): what successive calls of
    /// [`Transfer::poll_transmit_into`] would give, but the window's blocks are read from the
    /// content in one vectored read. `stride` must be at least
    /// [`Transfer::max_datagram_len`], or nothing is written.
    pub fn poll_transmit_batch(
        &mut self,
        now: Instant,
        out: &mut [u8],
        stride: usize,
        lens: &mut Vec<usize>,
    ) {
        lens.clear();
        if stride < self.max_datagram_len() || out.len() < stride {
            return;
        }
        let mut slots = out.chunks_exact_mut(stride);
        if let Some(bytes) = self.pending_control.take() {
            let Some(slot) = slots.next() else { return };
            slot[..bytes.len()].copy_from_slice(&bytes);
            lens.push(bytes.len());
        }
        if self.state != State::Sending {
            return;
        }
        if self.send_from <= self.window_end
            && let Err((message, error)) = self.batch_blocks(slots, lens)
        {
            self.fail(now, message, error);
            let bytes = self.pending_control.take().unwrap_or_default();
            let at = lens.len() * stride;
            out[at..at + bytes.len()].copy_from_slice(&bytes);
            lens.push(bytes.len());
            return;
        }
        if self.state == State::Sending && self.probe && self.send_from > self.window_end {
            let at = lens.len() * stride;
            if out.len() >= at + stride
                && let Some(n) = self.poll_transmit_into(now, &mut out[at..at + stride])
            {
                lens.push(n);
            }
        }
    }

    /// The contiguous part of [`Transfer::poll_transmit_batch`]: the burst's next blocks, read
    /// in one vectored read into `slots`.
    fn batch_blocks<'a>(
        &mut self,
        mut slots: impl Iterator<Item = &'a mut [u8]>,
        lens: &mut Vec<usize>,
    ) -> Result<(), (&'static str, String)> {
        let wanted = self.window_end - self.send_from + 1;
        let first = self.send_from;
        let blksize = usize::from(self.blksize);
        let mut payloads: Vec<&mut [u8]> = Vec::new();
        for (block, slot) in (first..).zip(
            slots
                .by_ref()
                .take(usize::try_from(wanted).unwrap_or(usize::MAX)),
        ) {
            slot[..2].copy_from_slice(&3u16.to_be_bytes());
            slot[2..4].copy_from_slice(&(block as u16).to_be_bytes());
            payloads.push(&mut slot[DATA_HEADER..DATA_HEADER + blksize]);
        }
        let count = payloads.len();
        let offset = (first - 1) * u64::from(self.blksize);
        // The window's bytes as the content's length says: full blocks, the last maybe short.
        let expected = self
            .content
            .len()
            .saturating_sub(offset)
            .min((count * blksize) as u64) as usize;
        let failure = match self.content.read_vectored_at(offset, &mut payloads) {
            Ok(total) if total >= expected => None,
            Ok(total) => Some(shrank(offset + total as u64)),
            Err(e) => Some(("Read error", e.to_string())),
        };
        drop(payloads);
        if let Some(failure) = failure {
            return Err(failure);
        }
        for block in first..first + count as u64 {
            lens.push(DATA_HEADER + self.payload_len(block));
        }
        self.mark_sent(count);
        Ok(())
    }

    /// Takes up to `max` DATA packets of the current window as descriptions instead of bytes
    /// (`out` is cleared first): for a sender that gathers each payload straight from the
    /// content (shared memory, or a file mapped into memory) next to its header, with no copy
    /// of its own. Gives nothing while a control packet (OACK, ERROR) is pending: that one
    /// comes from [`Transfer::poll_transmit_batch`] or [`Transfer::poll_transmit_into`].
    /// Payload lengths follow the content's length as opened.
    pub fn poll_transmit_blocks(&mut self, max: usize, out: &mut Vec<DataBlock>) {
        out.clear();
        if self.pending_control.is_some() || self.state != State::Sending {
            return;
        }
        let wanted = (self.window_end + 1).saturating_sub(self.send_from);
        let count = usize::try_from(wanted).unwrap_or(usize::MAX).min(max);
        for block in self.send_from..self.send_from + count as u64 {
            out.push(self.describe(block));
        }
        self.mark_sent(count);
        if self.probe && self.send_from > self.window_end && out.len() < max {
            out.push(self.probe_packet());
            self.mark_probe_sent();
        }
    }

    /// The description of DATA packet `block`.
    fn describe(&self, block: u64) -> DataBlock {
        let mut header = [0u8; DATA_HEADER];
        header[..2].copy_from_slice(&3u16.to_be_bytes());
        header[2..].copy_from_slice(&(block as u16).to_be_bytes());
        DataBlock {
            header,
            offset: (block - 1) * u64::from(self.blksize),
            len: self.payload_len(block),
        }
    }

    /// The payload length of `block`, from the content's length.
    fn payload_len(&self, block: u64) -> usize {
        let offset = (block - 1) * u64::from(self.blksize);
        self.content
            .len()
            .saturating_sub(offset)
            .min(u64::from(self.blksize)) as usize
    }

    /// Counts the next `count` blocks from `send_from` as sent.
    fn mark_sent(&mut self, count: usize) {
        if count == 0 {
            return;
        }
        let first = self.send_from;
        let last = first + count as u64 - 1;
        self.packets += count as u64;
        self.retransmitted += self.highest_sent.min(last).saturating_sub(first - 1);
        self.highest_sent = self.highest_sent.max(last);
        self.send_from = last + 1;
    }

    /// How many DATA packets [`Transfer::poll_transmit_into`] would give before it needs
    /// input (the rest of the current window or burst, and its probe), plus one for a pending
    /// control packet.
    pub fn pending_datagrams(&self) -> usize {
        let control = usize::from(self.pending_control.is_some());
        let data = if self.state == State::Sending {
            usize::try_from((self.window_end + 1).saturating_sub(self.send_from))
                .unwrap_or(usize::MAX)
                + usize::from(self.probe)
        } else {
            0
        };
        control + data
    }
}
