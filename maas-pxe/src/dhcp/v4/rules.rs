//! What each option's value must be: its length rule and content checks, and its dhcproto
//! form (typed where dhcproto reads it faithfully, raw otherwise).

use dhcproto::v4::{DhcpOption, UnknownOption};
use dhcproto::{Decodable, Decoder, Encodable, Encoder};
use hickory_proto::rr::Name;
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};

use crate::dhcp::error::{LengthRule, OptionError};
use crate::dhcp::options::{IpxeFeatures, MachineId, VendorClass};

/// How an option's value is checked and represented.
#[derive(Clone, Copy)]
enum Shape {
    /// dhcproto's typed form, after the length check.
    Typed,
    /// dhcproto's typed form, a `String`: the value must be UTF-8.
    Text,
    /// Kept as an [`UnknownOption`] with its exact bytes.
    Raw,
    /// A one-byte boolean: 0 or 1.
    Bool,
    /// A list of RFC 1035 names (options 88 and 119).
    Names,
    /// Option 81: typed when the name is in wire form and reads back exactly.
    Fqdn,
    /// Option 82: relay sub-options.
    Relay,
    /// Option 121: classless routes.
    Routes,
    /// Option 60: a vendor class, checked for the PXE format.
    VendorClass,
    /// Option 97: type 0 and a UUID.
    MachineId,
    /// Option 150: typed for one address, raw for several.
    TftpServers,
    /// Option 151: a status code and UTF-8 text.
    Status,
    /// Option 175: iPXE sub-options, framing checked.
    Ipxe,
}

/// The length rule and shape of a DHCPv4 option.
fn rule(code: u8) -> (LengthRule, Shape) {
    use LengthRule::{AtLeast, Between, Exactly, MultipleOf};
    const ADDRESSES: LengthRule = MultipleOf { unit: 4, min: 4 };
    const TEXT: LengthRule = AtLeast(1);
    match code {
        1 | 16 | 28 | 32 | 50 | 54 | 118 => (Exactly(4), Shape::Typed),
        2 | 24 | 35 | 38 | 51 | 58 | 59 | 91 | 106 | 152..=155 => (Exactly(4), Shape::Typed),
        3..=11 | 41 | 42 | 44 | 45 | 48 | 49 | 65 | 69..=76 | 89 | 92 => (ADDRESSES, Shape::Typed),
        68 => (MultipleOf { unit: 4, min: 0 }, Shape::Typed),
        12 | 14 | 15 | 17 | 18 | 40 | 47 | 56 | 62 | 64 | 100 | 101 | 114 => (TEXT, Shape::Text),
        13 | 22 | 26 | 57 => (Exactly(2), Shape::Typed),
        19 | 20 | 27 | 29 | 30 | 31 | 34 | 36 | 39 | 116 => (Exactly(1), Shape::Bool),
        21 | 33 => (MultipleOf { unit: 8, min: 8 }, Shape::Typed),
        23 | 46 | 53 | 156 | 157 => (Exactly(1), Shape::Typed),
        25 => (MultipleOf { unit: 2, min: 2 }, Shape::Typed),
        // dhcproto 0.15 decodes option 37 as option 23.
        37 => (Exactly(1), Shape::Raw),
        43 | 55 | 63 | 66 | 67 | 77 => (AtLeast(1), Shape::Typed),
        60 => (AtLeast(1), Shape::VendorClass),
        61 => (AtLeast(2), Shape::Typed),
        80 => (Exactly(0), Shape::Typed),
        81 => (AtLeast(3), Shape::Fqdn),
        82 => (AtLeast(2), Shape::Relay),
        88 | 119 => (AtLeast(1), Shape::Names),
        93 => (MultipleOf { unit: 2, min: 2 }, Shape::Typed),
        94 => (Exactly(3), Shape::Typed),
        97 => (Exactly(17), Shape::MachineId),
        121 => (AtLeast(5), Shape::Routes),
        150 => (ADDRESSES, Shape::TftpServers),
        151 => (Between(1, 255), Shape::Status),
        175 => (LengthRule::Any, Shape::Ipxe),
        208 | 211 => (Exactly(4), Shape::Raw),
        209 | 210 => (TEXT, Shape::Raw),
        _ => (LengthRule::Any, Shape::Raw),
    }
}

/// Checks one option value against its option's rules.
pub(super) fn check(code: u8, data: &[u8]) -> Result<(), OptionError> {
    let (len_rule, shape) = rule(code);
    OptionError::check(data, len_rule)?;
    match shape {
        Shape::Typed | Shape::Raw | Shape::Fqdn | Shape::TftpServers => Ok(()),
        Shape::Text => utf8(data),
        Shape::Status => utf8(&data[1..]),
        Shape::Bool if data[0] > 1 => Err(OptionError::invalid(format!(
            "boolean value {} is neither 0 nor 1",
            data[0]
        ))),
        Shape::Bool => Ok(()),
        Shape::Names => check_names(data).map(drop),
        Shape::Relay => check_relay(data),
        Shape::Routes => check_routes(data),
        Shape::VendorClass => VendorClass::check(data),
        Shape::MachineId => MachineId::parse(data).map(drop),
        Shape::Ipxe => IpxeFeatures::parse(data).map(drop),
    }
}

fn utf8(data: &[u8]) -> Result<(), OptionError> {
    std::str::from_utf8(data).map(drop).map_err(|e| {
        OptionError::invalid(format!(
            "text {:?} is not UTF-8 ({e})",
            String::from_utf8_lossy(data)
        ))
    })
}

pub(super) fn raw(code: u8, data: &[u8]) -> DhcpOption {
    DhcpOption::Unknown(UnknownOption::new(code.into(), data.to_vec()))
}

/// The dhcproto form of a value that passed [`check`]: typed where dhcproto reads it
/// faithfully, raw otherwise (and raw, never a panic, should dhcproto refuse it after all).
pub(crate) fn typed(code: u8, data: &[u8], scratch: &mut Vec<u8>) -> DhcpOption {
    let (len_rule, shape) = rule(code);
    // A length the option does not allow (possible through `ReplyOptions for Message`) would
    // trip dhcproto's debug assertions or be read lossily.
    if !len_rule.allows(data.len()) {
        return raw(code, data);
    }
    match shape {
        Shape::Raw | Shape::Ipxe => return raw(code, data),
        Shape::TftpServers if data.len() != 4 => return raw(code, data),
        Shape::Fqdn => {
            // E flag clear: the name is ASCII, which dhcproto would read as wire format.
            if data.first().is_none_or(|flags| flags & 0x04 == 0) {
                return raw(code, data);
            }
            let mut d = BinDecoder::new(data.get(3..).unwrap_or_default());
            if Name::read(&mut d).is_err() || !d.is_empty() {
                return raw(code, data);
            }
        }
        _ => {}
    }
    scratch.clear();
    for chunk in data.chunks(255) {
        scratch.push(code);
        scratch.push(chunk.len() as u8);
        scratch.extend_from_slice(chunk);
    }
    if data.is_empty() {
        scratch.extend_from_slice(&[code, 0]);
    }
    let Ok(opt) = DhcpOption::decode(&mut Decoder::new(scratch)) else {
        return raw(code, data);
    };
    if matches!(shape, Shape::Fqdn) && reencoded(&opt).as_deref() != Some(data) {
        // dhcproto would write the name differently (it lower-cases and canonicalises it).
        return raw(code, data);
    }
    opt
}

/// The value dhcproto writes for `opt`, its pieces concatenated.
fn reencoded(opt: &DhcpOption) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    opt.encode(&mut Encoder::new(&mut buf)).ok()?;
    let mut value = Vec::new();
    let mut i = 0;
    while i + 1 < buf.len() {
        let len = usize::from(buf[i + 1]);
        value.extend_from_slice(buf.get(i + 2..i + 2 + len)?);
        i += 2 + len;
    }
    Some(value)
}

/// Checks a list of RFC 1035 names, compression pointers allowed (RFC 3397).
pub(crate) fn check_names(data: &[u8]) -> Result<usize, OptionError> {
    let mut d = BinDecoder::new(data);
    let mut count = 0;
    while !d.is_empty() {
        let at = d.index();
        Name::read(&mut d)
            .map_err(|e| OptionError::invalid(format!("the domain name at byte {at}: {e}")))?;
        count += 1;
    }
    Ok(count)
}

/// Checks relay agent sub-options (RFC 3046): framing, the fixed lengths dhcproto relies on,
/// and no sub-option twice (dhcproto would keep only the last).
fn check_relay(data: &[u8]) -> Result<(), OptionError> {
    let mut seen = [false; 256];
    let mut i = 0;
    while i < data.len() {
        let sub = data[i];
        let Some(&len) = data.get(i + 1) else {
            return Err(OptionError::invalid(format!(
                "relay sub-option {sub} at byte {i} has no length byte"
            )));
        };
        let len = usize::from(len);
        let Some(value) = data.get(i + 2..i + 2 + len) else {
            return Err(OptionError::invalid(format!(
                "relay sub-option {sub} at byte {i} claims {len} bytes but only {} remain",
                data.len() - i - 2
            )));
        };
        if std::mem::replace(&mut seen[usize::from(sub)], true) {
            return Err(OptionError::invalid(format!(
                "relay sub-option {sub} appears twice"
            )));
        }
        let expected = match sub {
            4 | 5 | 11 => LengthRule::Exactly(4),
            10 => LengthRule::Exactly(1),
            _ => LengthRule::Any,
        };
        OptionError::check(value, expected)
            .map_err(|e| OptionError::invalid(format!("relay sub-option {sub}: {e}")))?;
        i += 2 + len;
    }
    Ok(())
}

/// Checks classless static routes (RFC 3442): prefix lengths up to 32, each destination with
/// its significant bytes and a router.
fn check_routes(data: &[u8]) -> Result<(), OptionError> {
    let mut i = 0;
    while i < data.len() {
        let prefix = data[i];
        if prefix > 32 {
            return Err(OptionError::invalid(format!(
                "the route at byte {i} has prefix length {prefix}, more than 32"
            )));
        }
        let need = 1 + usize::from(prefix).div_ceil(8) + 4;
        if i + need > data.len() {
            return Err(OptionError::invalid(format!(
                "the route at byte {i} (/{prefix}) needs {need} bytes but only {} remain",
                data.len() - i
            )));
        }
        i += need;
    }
    Ok(())
}
