//! The checks of a browser's request on its raw header values, with no HTTP types (the fuzz
//! target compiles this file alone): the session id among the cookies, the CSRF token, and
//! whether an `Origin` names the host the request was sent to.

use subtle::ConstantTimeEq;

/// The value of cookie `name` in a `Cookie` header, if it is there and not empty.
pub(crate) fn cookie_value(header: &str, name: &str) -> Option<String> {
    cookie::Cookie::split_parse(header)
        .filter_map(Result::ok)
        .find(|c| c.name() == name)
        .map(|c| c.value().to_owned())
        .filter(|v| !v.is_empty())
}

/// Whether the CSRF token sent is the session's, in time independent of where they differ.
pub(crate) fn same_token(sent: &[u8], expected: &[u8]) -> bool {
    !expected.is_empty() && bool::from(sent.ct_eq(expected))
}

/// Whether `origin` (`scheme://host[:port]`, as browsers send it) names `host` (the `Host`
/// header: `host[:port]`), host names compared without case. `null` and other schemes do not.
pub(crate) fn same_origin(origin: &[u8], host: &[u8]) -> bool {
    let authority = origin
        .strip_prefix(b"https://")
        .or_else(|| origin.strip_prefix(b"http://"));
    authority.is_some_and(|a| !a.is_empty() && a.eq_ignore_ascii_case(host))
}

/// What the fuzz target asserts for any input: the three checks answer, never panic, and
/// agree with themselves (a cookie value found is in the header; a token equals itself; an
/// origin made from a host names that host).
// Called by the fuzz target and the corpus replay only.
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) fn check(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (left, right) = text.split_once('\n').unwrap_or((&text, ""));
    if let Some(value) = cookie_value(left, right) {
        assert!(left.contains(&value));
    }
    assert_eq!(
        same_token(left.as_bytes(), left.as_bytes()),
        !left.is_empty()
    );
    let _ = same_origin(left.as_bytes(), right.as_bytes());
    if !right.is_empty() {
        assert!(same_origin(
            format!("http://{right}").as_bytes(),
            right.as_bytes()
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_on_bytes() {
        assert_eq!(cookie_value("a=1; s=x; b=2", "s").as_deref(), Some("x"));
        assert_eq!(cookie_value("s=", "s"), None);
        assert_eq!(cookie_value(";;=;", "s"), None);
        assert!(same_token(b"abc", b"abc"));
        assert!(!same_token(b"abd", b"abc"));
        assert!(!same_token(b"", b""));
        assert!(same_origin(b"http://Example:80", b"example:80"));
        assert!(same_origin(b"https://10.77.0.1", b"10.77.0.1"));
        assert!(!same_origin(b"https://10.77.0.1", b"10.77.0.1:5240"));
        assert!(!same_origin(b"null", b"null"));
        assert!(!same_origin(b"http://", b""));
    }

    #[test]
    fn the_fuzz_corpus_replays() {
        crate::tests::replay_corpus("controller_csrf", |_, data| check(data));
    }
}
