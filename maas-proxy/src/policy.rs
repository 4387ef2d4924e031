//! Cache policy: RFC 9111 through `http-cache-semantics`, plus the apt rules MAAS gives squid.
//! Does no I/O; time is passed in.
//!
//! The apt rules (squid `refresh_pattern`s in MAAS's configuration) only adjust the freshness
//! the origin's response carries before the policy crate sees it:
//! - index files (`Release`, `Release.gpg`, `InRelease`, `Packages*`, `Sources*`,
//!   `Translation-*`) are always revalidated (stored as `no-cache`),
//! - package files (`.deb`, `.udeb`, anything under `/pool/` or `/by-hash/`) are fresh for
//!   [`LONG_FRESHNESS`] when the origin gives no explicit lifetime,
//! - URLs with a query string are never stored.

use std::time::{Duration, SystemTime};

use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Uri, request, response};
use http_cache_semantics::{AfterResponse, BeforeRequest, CacheOptions, CachePolicy};

/// How long apt package files stay fresh without an explicit lifetime (90 days, as MAAS's
/// `refresh_pattern` for packages).
pub const LONG_FRESHNESS: Duration = Duration::from_secs(90 * 24 * 3600);

/// What kind of apt file a URL is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AptClass {
    /// An index file: always revalidated.
    Index,
    /// A package or content-addressed file: cached long.
    Package,
    /// Anything else: plain RFC 9111.
    Other,
}

/// Classifies `uri` by the apt rules.
pub fn classify(uri: &Uri) -> AptClass {
    let path = uri.path();
    let name = path.rsplit('/').next().unwrap_or_default();
    let stem = ["", ".gz", ".bz2", ".xz", ".lzma", ".zst", ".diff"]
        .iter()
        .find_map(|ext| name.strip_suffix(ext).filter(|_| !ext.is_empty()))
        .unwrap_or(name);
    if path.contains("/by-hash/")
        || path.contains("/pool/")
        || name.ends_with(".deb")
        || name.ends_with(".udeb")
    {
        AptClass::Package
    } else if matches!(
        stem,
        "Release" | "Release.gpg" | "InRelease" | "Packages" | "Sources" | "Index"
    ) || stem.starts_with("Translation-")
        || stem.starts_with("Contents-")
        || stem.starts_with("Commands-")
    {
        AptClass::Index
    } else {
        AptClass::Other
    }
}

/// Whether a request may be answered from or stored in the cache at all: `GET`, no query
/// string, no credentials, no `Range` on a miss (the full object is fetched instead).
pub fn request_cacheable(req: &request::Parts) -> bool {
    req.method == Method::GET
        && req.uri.query().is_none()
        && !req.headers.contains_key(header::AUTHORIZATION)
}

/// The response head the policy sees: the origin's, with the apt rules applied.
pub fn adjust_response(uri: &Uri, res: &response::Parts) -> response::Parts {
    let mut res = res.clone();
    match classify(uri) {
        AptClass::Index => {
            let cc = res
                .headers
                .get(header::CACHE_CONTROL)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            if !cc.contains("no-cache") {
                let merged = if cc.is_empty() {
                    "no-cache".to_string()
                } else {
                    format!("{cc}, no-cache")
                };
                if let Ok(v) = HeaderValue::from_str(&merged) {
                    res.headers.insert(header::CACHE_CONTROL, v);
                }
            }
        }
        AptClass::Package => {
            let explicit = res.headers.contains_key(header::EXPIRES)
                || res.headers.get_all(header::CACHE_CONTROL).iter().any(|v| {
                    v.to_str().is_ok_and(|s| {
                        s.contains("max-age") || s.contains("no-cache") || s.contains("no-store")
                    })
                });
            if !explicit {
                let mut value = format!("max-age={}", LONG_FRESHNESS.as_secs());
                if let Some(cc) = res
                    .headers
                    .get(header::CACHE_CONTROL)
                    .and_then(|v| v.to_str().ok())
                {
                    value = format!("{cc}, {value}");
                }
                if let Ok(v) = HeaderValue::from_str(&value) {
                    res.headers.insert(header::CACHE_CONTROL, v);
                }
            }
        }
        AptClass::Other => {}
    }
    res
}

/// The policy for a response to `req`, with the apt rules applied; `None` when it may not be
/// stored.
pub fn new_policy(
    req: &request::Parts,
    res: &response::Parts,
    now: SystemTime,
) -> Option<CachePolicy> {
    if !request_cacheable(req) {
        return None;
    }
    let adjusted = adjust_response(&req.uri, res);
    let policy = CachePolicy::new_options(req, &adjusted, now, CacheOptions::default());
    policy.is_storable().then_some(policy)
}

/// What to do with a request that has a stored object.
#[derive(Debug)]
pub enum Lookup {
    /// Serve the stored body with these response fields (Age included).
    Fresh(response::Parts),
    /// Ask upstream with these (conditional) request fields.
    Revalidate(request::Parts),
    /// The stored object does not match (e.g. `Vary`): fetch as a miss.
    Mismatch,
}

/// Decides between serving a stored object and asking upstream.
pub fn lookup(policy: &CachePolicy, req: &request::Parts, now: SystemTime) -> Lookup {
    match policy.before_request(req, now) {
        BeforeRequest::Fresh(parts) => Lookup::Fresh(parts),
        BeforeRequest::Stale {
            request,
            matches: true,
        } => Lookup::Revalidate(request),
        BeforeRequest::Stale { matches: false, .. } => Lookup::Mismatch,
    }
}

/// A fresh hit's answer, remembered so the next hits of the same stored response skip the
/// policy crate while nothing it decides on can differ.
///
/// Built from what [`lookup`] answered ([`Lookup::Fresh`]) at one moment: the response fields
/// and the response's age then. Until `fresh_until` (the policy's own time to live at that
/// moment, and never past the age of one day, where the policy starts adding a heuristic
/// warning), a request that carries no `Cache-Control`, no `Pragma` and the same `Host` as the
/// stored request gets the same answer from the policy, with only `Age` (and `Date`) moved
/// on: [`FreshHit::answer`] gives it without asking the policy again. Anything else (a
/// response with `Vary`, a request with its own cache directives, a later time) goes through
/// [`lookup`].
#[derive(Debug, Clone)]
pub struct FreshHit {
    status: http::StatusCode,
    headers: HeaderMap,
    host: Option<HeaderValue>,
    at: SystemTime,
    age: Duration,
    fresh_until: SystemTime,
}

impl FreshHit {
    /// The fast answer for the response `policy` describes, given that [`lookup`] answered
    /// `fresh` for `req` at `now`; `None` when the fast path cannot apply to it (e.g. `Vary`).
    pub fn new(
        policy: &CachePolicy,
        req: &request::Parts,
        fresh: &response::Parts,
        now: SystemTime,
    ) -> Option<Self> {
        if !plain_request(&req.headers) || req.method != Method::GET {
            return None;
        }
        let age = policy.age(now);
        let day = Duration::from_secs(24 * 3600);
        let ttl = policy.time_to_live(now).min(day.checked_sub(age)?);
        if ttl.is_zero() || fresh.headers.contains_key(header::VARY) {
            return None;
        }
        let mut headers = fresh.headers.clone();
        headers.remove(header::AGE);
        headers.remove(header::DATE);
        Some(Self {
            status: fresh.status,
            headers,
            host: req.headers.get(header::HOST).cloned(),
            at: now,
            age,
            fresh_until: now + ttl,
        })
    }

    /// The response fields for `req` at `now` (with `Age`; `Date` is the caller's), or `None`
    /// when [`lookup`] must decide.
    pub fn answer(&self, req: &request::Parts, now: SystemTime) -> Option<response::Parts> {
        if now >= self.fresh_until
            || req.method != Method::GET
            || !plain_request(&req.headers)
            || req.headers.get(header::HOST) != self.host.as_ref()
        {
            return None;
        }
        let age = self.age + now.duration_since(self.at).ok()?;
        let mut parts = http::Response::new(()).into_parts().0;
        parts.status = self.status;
        parts.headers = self.headers.clone();
        parts
            .headers
            .insert(header::AGE, HeaderValue::from(age.as_secs()));
        Some(parts)
    }
}

/// No request field the policy weighs for a fresh response: `Cache-Control`, `Pragma`.
fn plain_request(headers: &HeaderMap) -> bool {
    !headers.contains_key(header::CACHE_CONTROL) && !headers.contains_key(header::PRAGMA)
}

/// The outcome of a revalidation.
#[derive(Debug)]
pub enum Revalidated {
    /// 304: keep the stored body, store the merged policy, serve these fields.
    NotModified(Box<CachePolicy>, response::Parts),
    /// A new response replaces the stored one.
    Modified,
}

/// Merges upstream's answer to a revalidation into the stored policy. `sent` are the
/// conditional fields sent upstream: a 304 that repeats no validator (which RFC 9110 allows
/// but the policy needs to match) is taken to confirm the validators that were sent.
pub fn revalidated(
    policy: &CachePolicy,
    req: &request::Parts,
    sent: &HeaderMap,
    res: &response::Parts,
    now: SystemTime,
) -> Revalidated {
    let mut adjusted = adjust_response(&req.uri, res);
    if adjusted.status == http::StatusCode::NOT_MODIFIED {
        if !adjusted.headers.contains_key(header::ETAG)
            && let Some(v) = sent
                .get(header::IF_NONE_MATCH)
                .filter(|v| !v.as_bytes().contains(&b','))
        {
            adjusted.headers.insert(header::ETAG, v.clone());
        }
        if !adjusted.headers.contains_key(header::LAST_MODIFIED)
            && let Some(v) = sent.get(header::IF_MODIFIED_SINCE)
        {
            adjusted.headers.insert(header::LAST_MODIFIED, v.clone());
        }
    }
    match policy.after_response(req, &adjusted, now) {
        AfterResponse::NotModified(p, parts) => Revalidated::NotModified(Box::new(p), parts),
        AfterResponse::Modified(..) => Revalidated::Modified,
    }
}

/// Whether a client's own conditions (`If-None-Match`, else `If-Modified-Since`) hold for a
/// stored response with fields `res`, so it gets 304 instead of the body.
pub fn client_not_modified(req: &HeaderMap, res: &HeaderMap) -> bool {
    if let Some(inm) = req.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) {
        let Some(etag) = res.get(header::ETAG).and_then(|v| v.to_str().ok()) else {
            return false;
        };
        let weak = |t: &str| t.trim().trim_start_matches("W/").to_string();
        return inm
            .split(',')
            .any(|t| t.trim() == "*" || weak(t) == weak(etag));
    }
    let Some(since) = req
        .get(header::IF_MODIFIED_SINCE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok())
    else {
        return false;
    };
    let modified = res
        .get(header::LAST_MODIFIED)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok());
    modified.is_some_and(|m| m <= since)
}

/// A byte range to serve from a stored object of known length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeAnswer {
    /// No usable `Range` (absent, multi-range, or not bytes): serve the whole object (200).
    Full,
    /// Serve `start..=end` (206).
    Partial {
        /// First byte.
        start: u64,
        /// Last byte, inclusive.
        end: u64,
    },
    /// The range lies outside the object (416).
    Unsatisfiable,
}

/// Resolves a request's `Range` against an object of `len` bytes (one range; several ranges
/// are answered with the full object, which RFC 9110 allows).
pub fn range(headers: &HeaderMap, len: u64) -> RangeAnswer {
    let Some(spec) = headers.get(header::RANGE).and_then(|v| v.to_str().ok()) else {
        return RangeAnswer::Full;
    };
    let Some(set) = spec.trim().strip_prefix("bytes=") else {
        return RangeAnswer::Full;
    };
    if set.contains(',') {
        return RangeAnswer::Full;
    }
    let Some((a, b)) = set.trim().split_once('-') else {
        return RangeAnswer::Full;
    };
    let (a, b) = (a.trim(), b.trim());
    let parse = |s: &str| {
        s.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| s.parse::<u64>().ok())
            .flatten()
    };
    match (a.is_empty(), b.is_empty()) {
        (true, true) => RangeAnswer::Full,
        (true, false) => match parse(b) {
            Some(0) => RangeAnswer::Unsatisfiable,
            Some(n) if len > 0 => RangeAnswer::Partial {
                start: len.saturating_sub(n),
                end: len - 1,
            },
            Some(_) => RangeAnswer::Unsatisfiable,
            None => RangeAnswer::Full,
        },
        (false, _) => {
            let Some(start) = parse(a) else {
                return RangeAnswer::Full;
            };
            let end = if b.is_empty() {
                Some(u64::MAX)
            } else {
                parse(b)
            };
            match end {
                None => RangeAnswer::Full,
                Some(end) if end < start => RangeAnswer::Full,
                Some(_) if start >= len => RangeAnswer::Unsatisfiable,
                Some(end) => RangeAnswer::Partial {
                    start,
                    end: end.min(len - 1),
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use http::{Request, Response};
    use proptest::prelude::*;

    fn req(uri: &str) -> request::Parts {
        Request::get(uri).body(()).unwrap().into_parts().0
    }

    fn res(headers: &[(&str, &str)]) -> response::Parts {
        let mut b = Response::builder().status(200);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    fn t(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
    }

    #[test]
    fn apt_classes() {
        for index in [
            "dists/noble/InRelease",
            "dists/noble/Release",
            "dists/noble/Release.gpg",
            "dists/noble/main/binary-amd64/Packages.xz",
            "dists/noble/main/source/Sources.gz",
            "dists/noble/main/i18n/Translation-en.bz2",
            "x/Packages",
        ] {
            assert_eq!(
                classify(&format!("http://m/ubuntu/{index}").parse().unwrap()),
                AptClass::Index,
                "{index}"
            );
        }
        for pkg in [
            "pool/main/b/bash/bash_5.2_amd64.deb",
            "dists/noble/main/binary-amd64/by-hash/SHA256/ab12",
            "x/y.udeb",
        ] {
            assert_eq!(
                classify(&format!("http://m/ubuntu/{pkg}").parse().unwrap()),
                AptClass::Package,
                "{pkg}"
            );
        }
        assert_eq!(
            classify(&"http://m/images/squashfs".parse().unwrap()),
            AptClass::Other
        );
    }

    #[test]
    fn index_files_are_always_revalidated() {
        let r = req("http://m/ubuntu/dists/noble/InRelease");
        let p = new_policy(
            &r,
            &res(&[("cache-control", "max-age=3600"), ("etag", "\"v1\"")]),
            t(0),
        )
        .unwrap();
        let sent = match lookup(&p, &r, t(1)) {
            Lookup::Revalidate(rr) => rr.headers,
            other => panic!("{other:?}"),
        };
        assert_eq!(sent["if-none-match"], "\"v1\"");
        let status = |code: u16, etag: Option<&str>| {
            let mut b = Response::builder().status(code);
            if let Some(e) = etag {
                b = b.header("etag", e);
            }
            b.body(()).unwrap().into_parts().0
        };
        let merged = |res: &response::Parts, sent: &HeaderMap| {
            matches!(
                revalidated(&p, &r, sent, res, t(2)),
                Revalidated::NotModified(..)
            )
        };
        assert!(merged(&status(304, Some("\"v1\"")), &sent));
        assert!(
            merged(&status(304, None), &sent),
            "a bare 304 confirms what was sent"
        );
        assert!(!merged(&status(304, None), &HeaderMap::new()));
        assert!(!merged(&status(304, Some("\"v2\"")), &sent));
        assert!(!merged(&status(200, Some("\"v2\"")), &sent));
    }

    #[test]
    fn packages_are_fresh_long_and_explicit_lifetimes_win() {
        let r = req("http://m/ubuntu/pool/main/b/bash/bash_5.2_amd64.deb");
        let p = new_policy(
            &r,
            &res(&[("last-modified", "Mon, 01 Jan 2024 00:00:00 GMT")]),
            t(0),
        )
        .unwrap();
        assert!(matches!(
            lookup(&p, &r, t(80 * 24 * 3600)),
            Lookup::Fresh(_)
        ));
        assert!(matches!(
            lookup(&p, &r, t(91 * 24 * 3600)),
            Lookup::Revalidate(_)
        ));
        let p = new_policy(&r, &res(&[("cache-control", "max-age=10")]), t(0)).unwrap();
        assert!(matches!(lookup(&p, &r, t(11)), Lookup::Revalidate(_)));
    }

    #[test]
    fn not_stored() {
        let ok = res(&[("cache-control", "max-age=60")]);
        assert!(new_policy(&req("http://m/a?x=1"), &ok, t(0)).is_none());
        assert!(
            new_policy(
                &req("http://m/a"),
                &res(&[("cache-control", "no-store")]),
                t(0)
            )
            .is_none()
        );
        assert!(
            new_policy(
                &req("http://m/a"),
                &res(&[("cache-control", "private, max-age=60")]),
                t(0)
            )
            .is_none()
        );
        let mut auth = req("http://m/a");
        auth.headers
            .insert("authorization", HeaderValue::from_static("Basic eA=="));
        assert!(new_policy(&auth, &ok, t(0)).is_none());
        let mut post = req("http://m/a");
        post.method = Method::POST;
        assert!(new_policy(&post, &ok, t(0)).is_none());
        assert!(new_policy(&req("http://m/a"), &ok, t(0)).is_some());
    }

    #[test]
    fn vary_and_age() {
        let mut r = req("http://m/a");
        r.headers
            .insert("accept-encoding", HeaderValue::from_static("gzip"));
        let p = new_policy(
            &r,
            &res(&[("cache-control", "max-age=60"), ("vary", "accept-encoding")]),
            t(0),
        )
        .unwrap();
        match lookup(&p, &r, t(5)) {
            Lookup::Fresh(parts) => assert_eq!(parts.headers["age"], "5"),
            other => panic!("{other:?}"),
        }
        let mut other = req("http://m/a");
        other
            .headers
            .insert("accept-encoding", HeaderValue::from_static("br"));
        assert!(matches!(lookup(&p, &other, t(5)), Lookup::Mismatch));
    }

    #[test]
    fn ranges() {
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert(header::RANGE, HeaderValue::from_str(v).unwrap());
            m
        };
        assert_eq!(range(&HeaderMap::new(), 10), RangeAnswer::Full);
        assert_eq!(
            range(&h("bytes=0-3"), 10),
            RangeAnswer::Partial { start: 0, end: 3 }
        );
        assert_eq!(
            range(&h("bytes=5-"), 10),
            RangeAnswer::Partial { start: 5, end: 9 }
        );
        assert_eq!(
            range(&h("bytes=-4"), 10),
            RangeAnswer::Partial { start: 6, end: 9 }
        );
        assert_eq!(
            range(&h("bytes=-40"), 10),
            RangeAnswer::Partial { start: 0, end: 9 }
        );
        assert_eq!(
            range(&h("bytes=4-400"), 10),
            RangeAnswer::Partial { start: 4, end: 9 }
        );
        assert_eq!(range(&h("bytes=10-"), 10), RangeAnswer::Unsatisfiable);
        assert_eq!(range(&h("bytes=0-1,3-4"), 10), RangeAnswer::Full);
        assert_eq!(range(&h("items=0-1"), 10), RangeAnswer::Full);
        assert_eq!(range(&h("bytes=5-2"), 10), RangeAnswer::Full);
    }

    #[test]
    fn client_conditions() {
        let mut res = HeaderMap::new();
        res.insert(header::ETAG, HeaderValue::from_static("\"v1\""));
        res.insert(
            header::LAST_MODIFIED,
            HeaderValue::from_static("Mon, 01 Jan 2024 00:00:00 GMT"),
        );
        let mut req = HeaderMap::new();
        assert!(!client_not_modified(&req, &res));
        req.insert(
            header::IF_MODIFIED_SINCE,
            HeaderValue::from_static("Tue, 02 Jan 2024 00:00:00 GMT"),
        );
        assert!(client_not_modified(&req, &res));
        req.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_static("\"v0\", W/\"v1\""),
        );
        assert!(client_not_modified(&req, &res));
        req.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"v0\""));
        assert!(
            !client_not_modified(&req, &res),
            "If-None-Match wins over If-Modified-Since"
        );
    }

    #[test]
    fn fresh_hit_stays_out_of_the_way() {
        let r = req("http://m/a");
        let p = new_policy(&r, &res(&[("cache-control", "max-age=60")]), t(0)).unwrap();
        let Lookup::Fresh(head) = lookup(&p, &r, t(1)) else {
            panic!()
        };
        let hit = FreshHit::new(&p, &r, &head, t(1)).unwrap();
        assert!(hit.answer(&r, t(60)).is_none(), "stale: the policy decides");
        let mut nc = req("http://m/a");
        nc.headers
            .insert("cache-control", HeaderValue::from_static("no-cache"));
        assert!(
            hit.answer(&nc, t(2)).is_none(),
            "request directives: the policy decides"
        );
        let vary = new_policy(
            &r,
            &res(&[("cache-control", "max-age=60"), ("vary", "accept")]),
            t(0),
        )
        .unwrap();
        let Lookup::Fresh(head) = lookup(&vary, &r, t(1)) else {
            panic!()
        };
        assert!(FreshHit::new(&vary, &r, &head, t(1)).is_none());
    }

    proptest! {
        /// While the fast answer applies, it is the policy's answer (Date aside, which the
        /// server writes).
        #[test]
        fn fresh_hit_answers_as_the_policy(max_age in 1u64..200_000, first in 0u64..100_000, later in 0u64..300_000, age in 0u64..1000) {
            let r = req("http://m/pool/a.deb");
            let age = age.to_string();
            let cc = format!("max-age={max_age}");
            let p = new_policy(&r, &res(&[("cache-control", &cc), ("age", &age), ("etag", "\"x\"")]), t(0)).unwrap();
            let Lookup::Fresh(head) = lookup(&p, &r, t(first)) else {
                return Ok(());
            };
            let Some(hit) = FreshHit::new(&p, &r, &head, t(first)) else {
                return Ok(());
            };
            let now = t(first + later);
            if let Some(fast) = hit.answer(&r, now) {
                let Lookup::Fresh(mut slow) = lookup(&p, &r, now) else {
                    panic!("the fast answer outlived freshness");
                };
                slow.headers.remove(header::DATE);
                prop_assert_eq!(fast.status, slow.status);
                prop_assert_eq!(fast.headers, slow.headers);
            }
        }

        #[test]
        fn partial_ranges_lie_inside_the_object(spec in "bytes=[0-9]{0,4}-[0-9]{0,4}", len in 0u64..5000) {
            let mut m = HeaderMap::new();
            m.insert(header::RANGE, HeaderValue::from_str(&spec).unwrap());
            if let RangeAnswer::Partial { start, end } = range(&m, len) {
                prop_assert!(start <= end && end < len);
            }
        }
    }
}
