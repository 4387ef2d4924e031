//! Connection strings, as shown in messages: without their password.

/// `url` with its password replaced by `***`: in the user information of a URL, in a
/// `password=` query parameter, or in a `password=` key-value pair.
pub(super) fn redact(url: &str) -> String {
    const MASK: &str = "***";
    if let Some(scheme) = url.find("://") {
        let mut out = url.to_owned();
        let start = scheme + 3;
        let query = url[start..].find('?').map_or(url.len(), |i| start + i);
        // The user information ends at the last '@' before the query: a password may hold
        // an unescaped '/' or '@'.
        if let Some(at) = url[start..query].rfind('@')
            && let Some(colon) = url[start..start + at].find(':')
        {
            out.replace_range(start + colon + 1..start + at, MASK);
        }
        let query = out.find('?').map_or(out.len(), |i| i + 1);
        let mut masked = out[..query].to_owned();
        for (i, param) in out[query..].split('&').enumerate() {
            if i > 0 {
                masked.push('&');
            }
            match param.split_once('=') {
                Some((key, _)) if key == "password" => {
                    masked.push_str(key);
                    masked.push('=');
                    masked.push_str(MASK);
                }
                _ => masked.push_str(param),
            }
        }
        return masked;
    }
    // Key-value form: password=secret or password='se cret' (with \' and \\ escapes).
    let mut masked = String::with_capacity(url.len());
    let mut rest = url;
    while let Some(pos) = rest.find("password") {
        let before = &rest[..pos];
        let at_key = before.is_empty() || before.ends_with(char::is_whitespace);
        let after = rest[pos + "password".len()..].trim_start();
        masked.push_str(&rest[..pos + "password".len()]);
        rest = &rest[pos + "password".len()..];
        if !at_key || !after.starts_with('=') {
            continue;
        }
        let value = after[1..].trim_start();
        let end = if let Some(quoted) = value.strip_prefix('\'') {
            let mut escaped = false;
            quoted
                .char_indices()
                .find(|&(_, c)| {
                    let close = c == '\'' && !escaped;
                    escaped = c == '\\' && !escaped;
                    close
                })
                .map_or(value.len(), |(i, _)| i + 2)
        } else {
            value.find(char::is_whitespace).unwrap_or(value.len())
        };
        masked.push('=');
        masked.push_str(MASK);
        rest = &value[end..];
    }
    masked.push_str(rest);
    masked
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_masked_in_every_form() {
        let cases = [
            (
                "postgresql://maas:s3cret@db.example:5432/maas",
                "postgresql://maas:***@db.example:5432/maas",
            ),
            (
                "postgres://maas:p@ss/w0rd@localhost/maas?sslmode=disable",
                "postgres://maas:***@localhost/maas?sslmode=disable",
            ),
            (
                "postgresql://maas@/maas?host=/run/pg&password=s3cret&port=5433",
                "postgresql://maas@/maas?host=/run/pg&password=***&port=5433",
            ),
            (
                "postgresql://maas@/maas?host=/run/pg",
                "postgresql://maas@/maas?host=/run/pg",
            ),
            (
                "host=/run/pg user=maas password=s3cret dbname=maas",
                "host=/run/pg user=maas password=*** dbname=maas",
            ),
            (
                "host=/run/pg password = 'se cr\\'et' dbname=maas",
                "host=/run/pg password=*** dbname=maas",
            ),
            ("host=/run/pg mypassword=x", "host=/run/pg mypassword=x"),
        ];
        for (url, want) in cases {
            assert_eq!(redact(url), want, "{url}");
        }
    }
}
