//! API tokens and the `Authorization` header, without I/O: parsing (strict, bounded, never
//! panicking), generation from the system's random source, and hashing for storage.
//!
//! A token reads `maas_<id>_<secret>`: `id` is 8 random bytes and `secret` 20 (160 bits), both
//! in lower-case hex. The id names the token (in lists, in the audit trail, to revoke it); the
//! secret is shown once, when the token is made, and kept only as a SHA-256 hash. A presented
//! token is found by its id and its secret's hash compared in constant time.

use std::fmt;

use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

/// What every token starts with (so that secret scanners can recognise one).
pub const PREFIX: &str = "maas_";
/// Bytes of a token's id.
pub const ID_LEN: usize = 8;
/// Bytes of a token's secret.
pub const SECRET_LEN: usize = 20;
/// The length of a token's text.
pub const TEXT_LEN: usize = PREFIX.len() + 2 * ID_LEN + 1 + 2 * SECRET_LEN;
/// The longest `Authorization` header looked at; anything longer is refused unread.
pub const MAX_HEADER: usize = 512;

/// Why a token or an `Authorization` header was refused. The messages never repeat what was
/// presented.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// No `Authorization` header.
    #[error("no token: send `Authorization: Bearer <token>`")]
    Missing,
    /// The header is not `Bearer <token>`.
    #[error("the Authorization header is not `Bearer <token>`")]
    NotBearer,
    /// The header is longer than [`MAX_HEADER`].
    #[error("the Authorization header is longer than {MAX_HEADER} bytes")]
    TooLong,
    /// The text is not `maas_<16 hex digits>_<40 hex digits>`.
    #[error("not a token: tokens read maas_<16 hex digits>_<40 hex digits>")]
    Malformed,
    /// The system's random source failed.
    #[error("the system's random source failed")]
    Random,
}

/// A token's id: public, names the token.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TokenId(pub [u8; ID_LEN]);

impl fmt::Display for TokenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

impl fmt::Debug for TokenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenId({self})")
    }
}

impl std::str::FromStr for TokenId {
    type Err = TokenError;
    fn from_str(text: &str) -> Result<Self, TokenError> {
        let mut id = [0; ID_LEN];
        decode_hex(text.as_bytes(), &mut id)?;
        Ok(Self(id))
    }
}

impl serde::Serialize for TokenId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for TokenId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A whole token: its id and its secret. Its `Debug` hides the secret; its `Display` is the
/// text to hand to the one who asked for it, once.
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    /// The public part.
    pub id: TokenId,
    secret: [u8; SECRET_LEN],
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Token({PREFIX}{}_********)", self.id)
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}{}_", self.id)?;
        write_hex(f, &self.secret)
    }
}

impl Token {
    /// A new token from the system's random source.
    pub fn generate() -> Result<Self, TokenError> {
        let mut bytes = [0u8; ID_LEN + SECRET_LEN];
        getrandom::fill(&mut bytes).map_err(|_| TokenError::Random)?;
        let mut id = [0; ID_LEN];
        let mut secret = [0; SECRET_LEN];
        id.copy_from_slice(&bytes[..ID_LEN]);
        secret.copy_from_slice(&bytes[ID_LEN..]);
        Ok(Self {
            id: TokenId(id),
            secret,
        })
    }

    /// Parses a token's text, exactly: the prefix, 16 and 40 lower- or upper-case hex digits.
    pub fn parse(text: &[u8]) -> Result<Self, TokenError> {
        if text.len() != TEXT_LEN || !text.starts_with(PREFIX.as_bytes()) {
            return Err(TokenError::Malformed);
        }
        let rest = &text[PREFIX.len()..];
        let (id_hex, rest) = rest.split_at(2 * ID_LEN);
        let (separator, secret_hex) = rest.split_at(1);
        if separator != b"_" {
            return Err(TokenError::Malformed);
        }
        let mut id = [0; ID_LEN];
        let mut secret = [0; SECRET_LEN];
        decode_hex(id_hex, &mut id)?;
        decode_hex(secret_hex, &mut secret)?;
        Ok(Self {
            id: TokenId(id),
            secret,
        })
    }

    /// What is stored of the token: the hash of its id and secret.
    pub fn hash(&self) -> TokenHash {
        let mut hasher = Sha256::new();
        hasher.update(b"maas-rs token v1\0");
        hasher.update(self.id.0);
        hasher.update(self.secret);
        TokenHash(hasher.finalize().into())
    }
}

/// The SHA-256 a token is stored as; compared in constant time.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TokenHash(pub [u8; 32]);

impl TokenHash {
    /// Whether `token` hashes to this, in time independent of where they differ.
    pub fn matches(&self, token: &Token) -> bool {
        bool::from(self.0.ct_eq(&token.hash().0))
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenHash(")?;
        write_hex(f, &self.0)?;
        f.write_str(")")
    }
}

impl serde::Serialize for TokenHash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("{self:?}"))
    }
}

impl<'de> serde::Deserialize<'de> for TokenHash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        let hex = text
            .strip_prefix("TokenHash(")
            .and_then(|t| t.strip_suffix(')'))
            .ok_or_else(|| serde::de::Error::custom("not a token hash"))?;
        let mut hash = [0; 32];
        decode_hex(hex.as_bytes(), &mut hash).map_err(serde::de::Error::custom)?;
        Ok(Self(hash))
    }
}

/// What an `Authorization` header presents.
#[derive(Debug, PartialEq, Eq)]
pub enum Presented<'a> {
    /// A token (users, racks and machines).
    Token(Token),
    /// Something else after `Bearer ` (the cluster's enrolment secret, for example), for the
    /// caller to compare in constant time.
    Other(&'a [u8]),
}

/// Parses an `Authorization` header's value: the scheme `Bearer` (any case), one or more
/// spaces, then a token or other credential (no spaces inside, printable ASCII).
pub fn parse_authorization(value: Option<&[u8]>) -> Result<Presented<'_>, TokenError> {
    let value = value.ok_or(TokenError::Missing)?;
    if value.len() > MAX_HEADER {
        return Err(TokenError::TooLong);
    }
    let (scheme, rest) = match value.iter().position(|&b| b == b' ') {
        Some(i) => value.split_at(i),
        None => return Err(TokenError::NotBearer),
    };
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return Err(TokenError::NotBearer);
    }
    let credential = rest.trim_ascii();
    if credential.is_empty() || !credential.iter().all(|b| b.is_ascii_graphic()) {
        return Err(TokenError::NotBearer);
    }
    if credential.starts_with(PREFIX.as_bytes()) {
        return Token::parse(credential).map(Presented::Token);
    }
    Ok(Presented::Other(credential))
}

/// Whether `given` is `expected`, in time that depends only on their lengths.
pub fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    given.len() == expected.len() && bool::from(given.ct_eq(expected))
}

fn write_hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    bytes.iter().try_for_each(|b| write!(f, "{b:02x}"))
}

fn decode_hex(text: &[u8], out: &mut [u8]) -> Result<(), TokenError> {
    if text.len() != 2 * out.len() {
        return Err(TokenError::Malformed);
    }
    for (pair, byte) in text.chunks_exact(2).zip(out.iter_mut()) {
        let high = hex_digit(pair[0]).ok_or(TokenError::Malformed)?;
        let low = hex_digit(pair[1]).ok_or(TokenError::Malformed)?;
        *byte = high << 4 | low;
    }
    Ok(())
}

const fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_generated_token_reads_back_and_matches_its_hash_only() {
        let token = Token::generate().unwrap();
        let text = token.to_string();
        assert_eq!(text.len(), TEXT_LEN);
        assert!(text.starts_with(PREFIX));
        let parsed = Token::parse(text.as_bytes()).unwrap();
        assert_eq!(parsed, token);
        assert!(token.hash().matches(&parsed));
        let other = Token::generate().unwrap();
        assert_ne!(other, token, "160 random bits do not repeat");
        assert!(!token.hash().matches(&other));
        // The debug form hides the secret.
        assert!(!format!("{token:?}").contains(&text[TEXT_LEN - 40..]));
    }

    #[test]
    fn the_header_is_strict() {
        let token = Token::generate().unwrap();
        let header = format!("Bearer {token}");
        assert_eq!(
            parse_authorization(Some(header.as_bytes())),
            Ok(Presented::Token(token.clone()))
        );
        let lower = format!("bearer   {token}");
        assert!(matches!(
            parse_authorization(Some(lower.as_bytes())),
            Ok(Presented::Token(_))
        ));
        assert_eq!(parse_authorization(None), Err(TokenError::Missing));
        assert_eq!(
            parse_authorization(Some(b"Basic YWxhZGRpbjpvcGVuc2VzYW1l")),
            Err(TokenError::NotBearer)
        );
        assert_eq!(
            parse_authorization(Some(b"Bearer")),
            Err(TokenError::NotBearer)
        );
        assert_eq!(
            parse_authorization(Some(b"Bearer ")),
            Err(TokenError::NotBearer)
        );
        assert_eq!(
            parse_authorization(Some(b"Bearer a b")),
            Err(TokenError::NotBearer)
        );
        assert_eq!(
            parse_authorization(Some(b"Bearer maas_00")),
            Err(TokenError::Malformed)
        );
        let long = format!("Bearer {}", "x".repeat(MAX_HEADER));
        assert_eq!(
            parse_authorization(Some(long.as_bytes())),
            Err(TokenError::TooLong)
        );
        assert_eq!(
            parse_authorization(Some(b"Bearer a-shared-enrolment-secret")),
            Ok(Presented::Other(b"a-shared-enrolment-secret"))
        );
        let mut bad = token.to_string().into_bytes();
        bad[PREFIX.len() + 2 * ID_LEN] = b'-';
        assert_eq!(Token::parse(&bad), Err(TokenError::Malformed));
    }

    #[test]
    fn hashes_and_ids_survive_their_text_forms() {
        let token = Token::generate().unwrap();
        let hash = token.hash();
        let json = serde_json::to_string(&hash).unwrap();
        let back: TokenHash = serde_json::from_str(&json).unwrap();
        assert_eq!(back, hash);
        let id: TokenId = serde_json::from_str(&serde_json::to_string(&token.id).unwrap()).unwrap();
        assert_eq!(id, token.id);
        assert!("zz".parse::<TokenId>().is_err());
    }

    #[test]
    fn same_secret_compares_whole_values() {
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abc", b"abd"));
        assert!(!same_secret(b"abc", b"abcd"));
        assert!(!same_secret(b"", b"a"));
    }

    proptest! {
        #[test]
        fn any_header_is_answered_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = parse_authorization(Some(&bytes));
            let _ = Token::parse(&bytes);
        }

        #[test]
        fn tokens_round_trip(id in any::<[u8; ID_LEN]>(), secret in any::<[u8; SECRET_LEN]>()) {
            let token = Token { id: TokenId(id), secret };
            prop_assert_eq!(Token::parse(token.to_string().as_bytes()), Ok(token.clone()));
            prop_assert!(token.hash().matches(&token));
        }
    }
}
