//! The controller's `Authorization` header and token parsers: any bytes are answered
//! (a token, another credential, or a refusal), never a panic; a token read back prints as
//! what was read (up to the case of its hex digits) and matches its own hash.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../examples/controller/src/auth/token.rs"]
#[allow(dead_code, unreachable_pub)]
mod token;

fuzz_target!(|data: &[u8]| {
    if let Ok(token::Presented::Token(t)) = token::parse_authorization(Some(data)) {
        assert!(t.hash().matches(&t));
    }
    if let Ok(t) = token::Token::parse(data) {
        let text = t.to_string();
        assert!(
            text.as_bytes().eq_ignore_ascii_case(data),
            "printed differently"
        );
        assert_eq!(token::Token::parse(text.as_bytes()), Ok(t));
    }
});
