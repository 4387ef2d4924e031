//! Errors of the DHCP layer: decoding, encoding and boot configuration.

use std::fmt;

/// The part of a DHCPv4 message that options were read from.
///
/// Options normally live in the options field; option 52 (option overload) lets a sender
/// continue them in the `file` and `sname` header fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Area {
    /// The options field after the magic cookie.
    Options,
    /// The 128-byte `file` header field, overloaded with options.
    File,
    /// The 64-byte `sname` header field, overloaded with options.
    Sname,
}

impl fmt::Display for Area {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Options => "options field",
            Self::File => "file field (overloaded by option 52)",
            Self::Sname => "sname field (overloaded by option 52)",
        })
    }
}

/// The lengths an option value may have.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LengthRule {
    /// Any length, zero included.
    Any,
    /// Exactly this many bytes.
    Exactly(usize),
    /// At least this many bytes.
    AtLeast(usize),
    /// Between the two bounds, inclusive.
    Between(usize, usize),
    /// A multiple of `unit` bytes, at least `min`.
    MultipleOf {
        /// The size of one item.
        unit: usize,
        /// The smallest length allowed.
        min: usize,
    },
}

impl LengthRule {
    /// Whether a value of `len` bytes satisfies the rule.
    pub const fn allows(self, len: usize) -> bool {
        match self {
            Self::Any => true,
            Self::Exactly(n) => len == n,
            Self::AtLeast(n) => len >= n,
            Self::Between(lo, hi) => lo <= len && len <= hi,
            Self::MultipleOf { unit, min } => len >= min && len.is_multiple_of(unit),
        }
    }
}

impl fmt::Display for LengthRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Any => f.write_str("any length"),
            Self::Exactly(n) => write!(f, "exactly {n} bytes"),
            Self::AtLeast(n) => write!(f, "at least {n} bytes"),
            Self::Between(lo, hi) => write!(f, "{lo} to {hi} bytes"),
            Self::MultipleOf { unit, min } => {
                write!(f, "a multiple of {unit} bytes, at least {min}")
            }
        }
    }
}

/// Why an option value is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OptionError {
    /// The value has a length the option does not allow.
    #[error("length {len} where {expected} is required")]
    Length {
        /// The length found.
        len: usize,
        /// What the option allows.
        expected: LengthRule,
    },
    /// The value has the right length but its content is invalid.
    #[error("{reason}")]
    Invalid {
        /// What is wrong, naming the offending value.
        reason: String,
    },
}

impl OptionError {
    pub(crate) fn invalid(reason: impl Into<String>) -> Self {
        Self::Invalid {
            reason: reason.into(),
        }
    }

    /// Checks `data` against `rule`.
    pub(crate) fn check(data: &[u8], rule: LengthRule) -> Result<(), Self> {
        if rule.allows(data.len()) {
            Ok(())
        } else {
            Err(Self::Length {
                len: data.len(),
                expected: rule,
            })
        }
    }
}

/// Why a datagram is not a well-formed DHCP message.
///
/// Decoding is strict: a truncated message, an option whose length runs past the end of its
/// field, a value whose length or content the option does not allow, all give one of these
/// rather than a shortened option list.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The datagram is shorter than the fixed DHCPv4 header and magic cookie.
    #[error(
        "DHCPv4 message of {len} bytes is shorter than the {need}-byte header and magic cookie"
    )]
    Truncated {
        /// The datagram's length.
        len: usize,
        /// The bytes needed.
        need: usize,
    },
    /// The magic cookie after the header is not 99.130.83.99.
    #[error("not a DHCP message: magic cookie {found:02x?} where [63, 82, 53, 63] belongs")]
    Magic {
        /// The four bytes found.
        found: [u8; 4],
    },
    /// The hardware address length does not fit the 16-byte `chaddr` field.
    #[error("hardware address length {hlen} is longer than the 16-byte chaddr field")]
    HardwareLength {
        /// The `hlen` header field.
        hlen: u8,
    },
    /// An option's length runs past the end of the field holding it.
    #[error(
        "DHCPv4 option {code} at byte {offset} of the {area} claims {len} bytes but only \
         {available} remain"
    )]
    Overrun {
        /// The field holding the option.
        area: Area,
        /// The option code.
        code: u8,
        /// Where the option starts, from the start of the field.
        offset: usize,
        /// The length the option claims.
        len: usize,
        /// The bytes left in the field after the option's length byte.
        available: usize,
    },
    /// An option code is the last byte of its field, with no length byte after it.
    #[error("DHCPv4 option {code} at byte {offset} of the {area} has no length byte")]
    NoLength {
        /// The field holding the option.
        area: Area,
        /// The option code.
        code: u8,
        /// Where the option starts, from the start of the field.
        offset: usize,
    },
    /// The options field holds options but no end option (255) after them.
    #[error("the {area} holds options but no end option (255) after them")]
    MissingEnd {
        /// The field.
        area: Area,
    },
    /// Option 52 holds a value other than 1, 2 or 3.
    #[error(
        "option 52 (option overload) has value {value}; expected 1 (file), 2 (sname) or 3 (both)"
    )]
    Overload {
        /// The value found.
        value: u8,
    },
    /// Option 52 appears in an overloaded field; it may only appear in the options field.
    #[error("option 52 (option overload) appears in the {area}; it belongs in the options field")]
    MisplacedOverload {
        /// The field where it was found.
        area: Area,
    },
    /// A DHCPv4 option value is malformed.
    #[error("DHCPv4 option {code} ({name}): {problem}", name = v4_name(*.code))]
    Option {
        /// The option code.
        code: u8,
        /// What is wrong with it.
        problem: OptionError,
    },
    /// The datagram is shorter than a DHCPv6 message or relay header.
    #[error("DHCPv6 message of {len} bytes is shorter than its {need}-byte header")]
    V6Truncated {
        /// The datagram's (or relayed message's) length.
        len: usize,
        /// The bytes needed.
        need: usize,
    },
    /// A DHCPv6 option header (code and length, four bytes) is cut short.
    #[error(
        "DHCPv6 option header at byte {offset} is cut short: {available} of its 4 bytes remain"
    )]
    V6Header {
        /// Where the option starts, from the start of the list holding it.
        offset: usize,
        /// The bytes left.
        available: usize,
    },
    /// A DHCPv6 option's length runs past the end of the message or option holding it.
    #[error("DHCPv6 option {code} at byte {offset} claims {len} bytes but only {available} remain")]
    V6Overrun {
        /// The option code.
        code: u16,
        /// Where the option starts, from the start of the list holding it.
        offset: usize,
        /// The length the option claims.
        len: usize,
        /// The bytes left after the option's header.
        available: usize,
    },
    /// A DHCPv6 option value is malformed.
    #[error("DHCPv6 option {code} ({name}): {problem}", name = v6_name(*.code))]
    V6Option {
        /// The option code.
        code: u16,
        /// What is wrong with it.
        problem: OptionError,
    },
    /// A DHCPv6 option appears inside an option that may not hold it.
    #[error("DHCPv6 option {code} ({name}) is not allowed inside option {parent}", name = v6_name(*.code))]
    V6Misplaced {
        /// The option code.
        code: u16,
        /// The option holding it.
        parent: u16,
    },
    /// Relay messages nested deeper than any relay chain can be.
    #[error("DHCPv6 relay messages nested more than {max} deep")]
    V6TooDeep {
        /// The deepest nesting accepted.
        max: usize,
    },
}

/// Why a message could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The message carries option 52; the encoder writes every option in the options field
    /// and never overloads `file` or `sname`.
    #[error(
        "option 52 (option overload) cannot be encoded: options are always written in the \
         options field and the file and sname fields keep their names"
    )]
    Overload,
    /// A DHCPv6 option or relayed message is longer than a 16-bit length can say.
    #[error("DHCPv6 option {code} would carry {len} bytes; an option holds at most 65535")]
    V6TooLong {
        /// The option code.
        code: u16,
        /// Its length.
        len: usize,
    },
    /// A DHCPv6 option sits inside an option that may not hold it (the codec cannot write it
    /// there faithfully).
    #[error("DHCPv6 option {code} is not allowed inside option {parent}")]
    V6Misplaced {
        /// The option code.
        code: u16,
        /// The option holding it.
        parent: u16,
    },
    /// A PXE vendor sub-option (inside option 43) is longer than 255 bytes.
    #[error("PXE vendor sub-option {code} would carry {len} bytes; a sub-option holds at most 255")]
    SubOptionTooLong {
        /// The sub-option code.
        code: u8,
        /// Its length.
        len: usize,
    },
    /// The underlying codec refused a value.
    #[error("encoding failed: {reason}")]
    Codec {
        /// The codec's message.
        reason: String,
    },
}

impl From<dhcproto::error::EncodeError> for EncodeError {
    fn from(e: dhcproto::error::EncodeError) -> Self {
        Self::Codec {
            reason: e.to_string(),
        }
    }
}

/// Why a boot configuration (or a name in one) was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A template names a placeholder other than `{server}`.
    #[error(
        "boot method {method}: {field} {template:?} uses the placeholder {{{placeholder}}}; \
         the only placeholder is {{server}}"
    )]
    Placeholder {
        /// The boot method's name.
        method: String,
        /// `file`, `path_prefix` or `config_file`.
        field: &'static str,
        /// The template.
        template: String,
        /// The unknown placeholder.
        placeholder: String,
    },
    /// A template has a `{` without its `}` or the reverse.
    #[error("boot method {method}: {field} {template:?} has an unbalanced brace")]
    Brace {
        /// The boot method's name.
        method: String,
        /// `file`, `path_prefix` or `config_file`.
        field: &'static str,
        /// The template.
        template: String,
    },
    /// A boot method has an empty boot file.
    #[error("boot method {method}: the boot file is empty")]
    EmptyFile {
        /// The boot method's name.
        method: String,
    },
    /// A string that ends up in a C-string header field or option contains a NUL byte.
    #[error("boot method {method}: {field} {value:?} contains a NUL byte")]
    Nul {
        /// The boot method's name.
        method: String,
        /// The field.
        field: &'static str,
        /// The value.
        value: String,
    },
    /// The fallback method has no entry in the table.
    #[error("the fallback boot method {method} has no entry in the boot method table")]
    Fallback {
        /// The method's name.
        method: String,
    },
    /// PXE vendor options that cannot be encoded.
    #[error("PXE vendor options: {0}")]
    VendorOptions(#[from] EncodeError),
    /// A domain name that is not a valid DNS name.
    #[error("{name:?} is not a valid domain name: {reason}")]
    DomainName {
        /// The name as given.
        name: String,
        /// Why it was refused.
        reason: String,
    },
}

/// A short name for a DHCPv4 option code, for messages.
pub(crate) fn v4_name(code: u8) -> &'static str {
    match code {
        1 => "subnet mask",
        3 => "router",
        6 => "domain name servers",
        12 => "host name",
        15 => "domain name",
        26 => "interface MTU",
        43 => "vendor-specific information",
        50 => "requested IP address",
        51 => "IP address lease time",
        52 => "option overload",
        53 => "DHCP message type",
        54 => "server identifier",
        55 => "parameter request list",
        57 => "maximum DHCP message size",
        58 => "renewal time",
        59 => "rebinding time",
        60 => "vendor class identifier",
        61 => "client identifier",
        66 => "TFTP server name",
        67 => "boot file name",
        77 => "user class",
        80 => "rapid commit",
        81 => "client FQDN",
        82 => "relay agent information",
        93 => "client system architecture",
        94 => "client network interface identifier",
        97 => "client machine identifier",
        119 => "domain search",
        121 => "classless static route",
        150 => "TFTP server address",
        175 => "iPXE encapsulated options",
        209 => "PXELINUX configuration file",
        210 => "PXELINUX path prefix",
        211 => "PXELINUX reboot time",
        _ => "no short name",
    }
}

/// A short name for a DHCPv6 option code, for messages.
pub(crate) fn v6_name(code: u16) -> &'static str {
    match code {
        1 => "client identifier",
        2 => "server identifier",
        3 => "IA_NA",
        4 => "IA_TA",
        5 => "IA address",
        6 => "option request",
        7 => "preference",
        8 => "elapsed time",
        9 => "relay message",
        11 => "authentication",
        12 => "server unicast",
        13 => "status code",
        14 => "rapid commit",
        15 => "user class",
        16 => "vendor class",
        17 => "vendor-specific information",
        18 => "interface identifier",
        19 => "reconfigure message",
        20 => "reconfigure accept",
        23 => "DNS recursive name servers",
        24 => "domain search list",
        25 => "IA_PD",
        26 => "IA prefix",
        32 => "information refresh time",
        56 => "NTP server",
        59 => "boot file URL",
        60 => "boot file parameters",
        61 => "client system architecture",
        62 => "client network interface identifier",
        _ => "no short name",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_values() {
        let e = DecodeError::Option {
            code: 51,
            problem: OptionError::Length {
                len: 2,
                expected: LengthRule::Exactly(4),
            },
        };
        assert_eq!(
            e.to_string(),
            "DHCPv4 option 51 (IP address lease time): length 2 where exactly 4 bytes is required"
        );
        let e = DecodeError::Overrun {
            area: Area::File,
            code: 12,
            offset: 120,
            len: 30,
            available: 6,
        };
        assert_eq!(
            e.to_string(),
            "DHCPv4 option 12 at byte 120 of the file field (overloaded by option 52) claims 30 \
             bytes but only 6 remain"
        );
        let e = DecodeError::V6Misplaced {
            code: 15,
            parent: 3,
        };
        assert_eq!(
            e.to_string(),
            "DHCPv6 option 15 (user class) is not allowed inside option 3"
        );
        assert_eq!(
            DecodeError::Magic { found: [0; 4] }.to_string(),
            "not a DHCP message: magic cookie [00, 00, 00, 00] where [63, 82, 53, 63] belongs"
        );
    }

    #[test]
    fn length_rules() {
        let multiple = LengthRule::MultipleOf { unit: 4, min: 4 };
        assert!(!multiple.allows(0) && multiple.allows(8) && !multiple.allows(6));
        assert!(LengthRule::Between(3, 130).allows(3) && !LengthRule::Between(3, 130).allows(131));
        assert!(LengthRule::Any.allows(0));
        assert_eq!(multiple.to_string(), "a multiple of 4 bytes, at least 4");
    }
}
