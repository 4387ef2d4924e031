//! The options field read as raw values: walking the option framing, option 52 (overload),
//! the NUL-terminated header fields, and the per-code concatenation of RFC 3396.

use std::ops::Range;

use crate::dhcp::error::{Area, DecodeError, LengthRule, OptionError};
use crate::dhcp::options::code;

/// One instance of an option: its code and where its value lies in the datagram.
#[derive(Clone, Copy)]
pub(super) struct Piece {
    code: u8,
    start: usize,
    end: usize,
}

/// Walks the options in `bytes[field]`, appending each instance to `pieces`.
pub(super) fn walk(
    bytes: &[u8],
    field: Range<usize>,
    area: Area,
    pieces: &mut Vec<Piece>,
) -> Result<(), DecodeError> {
    let base = field.start;
    let data = &bytes[field];
    let mut i = 0;
    let mut any = false;
    while i < data.len() {
        let code = data[i];
        match code {
            code::PAD => i += 1,
            code::END => return Ok(()),
            _ => {
                if code == code::OVERLOAD && area != Area::Options {
                    return Err(DecodeError::MisplacedOverload { area });
                }
                let Some(&len) = data.get(i + 1) else {
                    return Err(DecodeError::NoLength {
                        area,
                        code,
                        offset: i,
                    });
                };
                let len = usize::from(len);
                let end = i + 2 + len;
                if end > data.len() {
                    return Err(DecodeError::Overrun {
                        area,
                        code,
                        offset: i,
                        len,
                        available: data.len() - i - 2,
                    });
                }
                pieces.push(Piece {
                    code,
                    start: base + i + 2,
                    end: base + end,
                });
                any = true;
                i = end;
            }
        }
    }
    if any && area == Area::Options {
        return Err(DecodeError::MissingEnd { area });
    }
    Ok(())
}

/// The value of option 52, or 0 when absent.
pub(super) fn overload(bytes: &[u8], pieces: &[Piece]) -> Result<u8, DecodeError> {
    let mut value = Vec::new();
    for p in pieces.iter().filter(|p| p.code == code::OVERLOAD) {
        value.extend_from_slice(&bytes[p.start..p.end]);
    }
    match value.as_slice() {
        [] if !pieces.iter().any(|p| p.code == code::OVERLOAD) => Ok(0),
        [v @ 1..=3] => Ok(*v),
        [v] => Err(DecodeError::Overload { value: *v }),
        other => Err(DecodeError::Option {
            code: code::OVERLOAD,
            problem: OptionError::Length {
                len: other.len(),
                expected: LengthRule::Exactly(1),
            },
        }),
    }
}

/// The text of a NUL-terminated header field, or `None` when it is empty.
pub(super) fn c_string(field: &[u8]) -> Option<&[u8]> {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    (end > 0).then(|| &field[..end])
}

/// The concatenated value of every option code, in first-appearance order.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub(super) struct RawOptions {
    data: Vec<u8>,
    index: Vec<(u8, Range<usize>)>,
}

impl RawOptions {
    pub(super) fn concatenate(bytes: &[u8], pieces: &[Piece]) -> Self {
        const NONE: u16 = u16::MAX;
        let mut slot = [NONE; 256];
        let mut index: Vec<(u8, Range<usize>)> = Vec::with_capacity(pieces.len());
        for p in pieces {
            let s = &mut slot[usize::from(p.code)];
            if *s == NONE {
                // At most 255 codes, so the index fits.
                *s = index.len() as u16;
                index.push((p.code, 0..0));
            }
            index[usize::from(*s)].1.end += p.end - p.start;
        }
        let mut total = 0;
        for (_, r) in &mut index {
            let len = r.end;
            *r = total..total;
            total += len;
        }
        let mut data = vec![0; total];
        for p in pieces {
            let r = &mut index[usize::from(slot[usize::from(p.code)])].1;
            let len = p.end - p.start;
            data[r.end..r.end + len].copy_from_slice(&bytes[p.start..p.end]);
            r.end += len;
        }
        Self { data, index }
    }

    pub(super) fn get(&self, code: u8) -> Option<&[u8]> {
        self.index
            .iter()
            .find(|(c, _)| *c == code)
            .map(|(_, r)| &self.data[r.clone()])
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (u8, &[u8])> {
        self.index.iter().map(|(c, r)| (*c, &self.data[r.clone()]))
    }
}
