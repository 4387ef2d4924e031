//! The naming rules of machines and interfaces, and a guard for names that YAML 1.1 readers
//! would misread once rendered.

use crate::Error;

/// MAAS's interface name rule `^[\w\-_.:]{1,15}$`, and no name that YAML 1.1 misreads.
pub(crate) fn check_interface_name(name: &str) -> Result<(), Error> {
    let count = name.chars().count();
    let valid = (1..=15).contains(&count)
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'));
    if !valid {
        return Err(Error::InvalidInterfaceName {
            name: name.chars().take(64).collect(),
        });
    }
    unambiguous("interface name", name)
}

/// A host name is one DNS label: 1 to 63 ASCII letters, digits or `-`, not at either end.
pub(crate) fn check_hostname(name: &str) -> Result<(), Error> {
    if !is_label(name) {
        return Err(Error::InvalidHostname {
            name: name.chars().take(64).collect(),
        });
    }
    // Host names are not written into the rendered documents, so YAML cannot misread them.
    Ok(())
}

/// A domain is DNS labels joined by `.`, at most 255 characters.
pub(crate) fn check_domain(name: &str) -> Result<(), Error> {
    if name.len() > 255 || !name.split('.').all(is_label) {
        return Err(Error::InvalidDomain {
            name: name.chars().take(64).collect(),
        });
    }
    unambiguous("domain", name)
}

fn is_label(label: &str) -> bool {
    (1..=63).contains(&label.len())
        && label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !label.starts_with('-')
        && !label.ends_with('-')
}

fn unambiguous(what: &'static str, name: &str) -> Result<(), Error> {
    if yaml11_misreads(name) {
        Err(Error::AmbiguousName {
            what,
            name: name.to_owned(),
        })
    } else {
        Ok(())
    }
}

/// Whether a YAML 1.1 reader (PyYAML, which cloud-init uses) resolves the plain scalar `s` to
/// something other than a string: a boolean, null, an integer (binary, octal, hex, base 60,
/// with `_`), a float, or a date. The YAML emitter quotes what YAML 1.2 would misread, but
/// not every 1.1 form (`1_000`, `0b11`, `2024-01-01`), so such names are refused. Errs on the
/// side of refusing.
pub(crate) fn yaml11_misreads(s: &str) -> bool {
    const WORDS: &[&str] = &[
        "", "~", "=", "<<", "null", "Null", "NULL", "yes", "Yes", "YES", "no", "No", "NO", "true",
        "True", "TRUE", "false", "False", "FALSE", "on", "On", "ON", "off", "Off", "OFF",
    ];
    if WORDS.contains(&s) {
        return true;
    }
    let unsigned = s.strip_prefix(['+', '-']).unwrap_or(s);
    let lower = unsigned.to_ascii_lowercase();
    if [".inf", ".nan"].contains(&lower.as_str()) {
        return true;
    }
    let bytes = unsigned.as_bytes();
    let digit_start = bytes
        .first()
        .is_some_and(|b| b.is_ascii_digit() || *b == b'.');
    if !digit_start {
        return false;
    }
    let all = |rest: &str, ok: fn(u8) -> bool| !rest.is_empty() && rest.bytes().all(ok);
    if let Some(rest) = unsigned.strip_prefix("0b") {
        return all(rest, |b| matches!(b, b'0' | b'1' | b'_'));
    }
    if let Some(rest) = unsigned.strip_prefix("0x") {
        return all(rest, |b| b.is_ascii_hexdigit() || b == b'_');
    }
    // Integers, octals, base-60 numbers and floats without exponent use only these.
    let numeric = |b: u8| b.is_ascii_digit() || matches!(b, b'_' | b'.' | b':');
    if bytes.iter().any(u8::is_ascii_digit) && bytes.iter().copied().all(numeric) {
        return true;
    }
    // A float with an exponent: mantissa, `e`, sign, digits.
    if let Some(e) = unsigned.find(['e', 'E']) {
        let (mantissa, exponent) = (&unsigned[..e], &unsigned[e + 1..]);
        let exponent = exponent.strip_prefix(['+', '-']).unwrap_or(exponent);
        if mantissa.contains('.')
            && mantissa
                .bytes()
                .all(|b| b.is_ascii_digit() || b == b'_' || b == b'.')
            && all(exponent, |b| b.is_ascii_digit())
        {
            return true;
        }
    }
    // A date or timestamp: four digits and a dash.
    bytes.len() >= 6 && bytes[..4].iter().all(u8::is_ascii_digit) && bytes[4] == b'-'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml11_forms_are_caught() {
        for s in [
            "1_000",
            "0b101",
            "0x1F",
            "017",
            "1:20",
            "190:20:30",
            "1.5",
            "1_0.5",
            ".5",
            "1.5e+3",
            "yes",
            "off",
            "~",
            "+12",
            "-.inf",
            "2024-01-01",
            "12",
        ] {
            assert!(yaml11_misreads(s), "{s}");
        }
        for s in [
            "eth0", "eth0.100", "bond0", "br-ex", "enp1s0f0", "1e3x", "maas", "node-1", "0b2",
            "e1", "1a", "y", "n",
        ] {
            assert!(!yaml11_misreads(s), "{s}");
        }
    }

    #[test]
    fn names_follow_maas() {
        assert!(check_interface_name("eth0.100").is_ok());
        assert!(check_interface_name("a:b_c-d").is_ok());
        assert!(check_interface_name("sixteen-chars-xx").is_err());
        assert!(check_interface_name("eth 0").is_err());
        assert!(check_interface_name("").is_err());
        assert!(check_interface_name("1_000").is_err());
        assert!(check_hostname("node-1").is_ok());
        assert!(check_hostname("-node").is_err());
        assert!(check_hostname("node.maas").is_err());
        assert!(check_domain("maas").is_ok());
        assert!(check_domain("example.com").is_ok());
        assert!(check_domain("example..com").is_err());
    }
}
