//! Cacheable requests: hits from the store, misses and revalidations fetched once and
//! followed by every client asking meanwhile (collapsed forwarding).

use std::io;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::request::Parts as RequestParts;
use http::response::Parts as ResponseParts;
use http::{Method, Response, StatusCode};
use http_body_util::BodyExt;

use crate::policy::{self, Lookup, RangeAnswer, Revalidated};
use crate::request::Target;
use crate::store::{Fetch, Meta, Object, Role};

use super::dial::send;
use super::{Body, Failure, Shared, client_head, empty, full, pass_through, text};

pub(super) async fn cached(
    shared: &Arc<Shared>,
    target: &Target,
    req: RequestParts,
) -> Result<Response<Body>, Failure> {
    let url = target.uri.to_string();
    let now = SystemTime::now();
    let mut upstream_headers = None;
    let mut stored = None;
    if let Some(obj) = shared.store.get(&url) {
        // A remembered fresh answer, while the policy would give the same one.
        if let Some(head) = obj.hit.as_ref().and_then(|h| h.answer(&req, now)) {
            shared.metrics.add_hits(1);
            return Ok(serve_object(shared, &req, head, obj, "HIT"));
        }
        match policy::lookup(&obj.meta.policy, &req, now) {
            Lookup::Fresh(mut head) => {
                if let Some(hit) = policy::FreshHit::new(&obj.meta.policy, &req, &head, now) {
                    shared.store.remember_hit(&url, &obj.meta, hit);
                }
                // hyper writes its own (cached) Date, in the HTTP-date format.
                head.headers.remove(header::DATE);
                shared.metrics.add_hits(1);
                return Ok(serve_object(shared, &req, head, obj, "HIT"));
            }
            Lookup::Revalidate(r) => {
                let mut h = r.headers;
                h.remove(header::RANGE);
                h.remove(header::IF_RANGE);
                upstream_headers = Some(h);
                stored = Some(obj);
            }
            Lookup::Mismatch => {}
        }
    }
    let upstream_headers = upstream_headers.unwrap_or_else(|| miss_headers(&req.headers));
    let role = shared
        .store
        .begin(&url)
        .map_err(|e| Failure::Upstream(e.to_string()))?;
    let fetch = match role {
        Role::Leader(fetch) => {
            let task_shared = Arc::clone(shared);
            let (task_target, task_req) = (target.clone(), req.clone());
            let f = Arc::clone(&fetch);
            let stored_meta = stored.as_ref().map(|o| Arc::clone(&o.meta));
            let (tx, rx) = tokio::sync::oneshot::channel();
            tokio::spawn(async move {
                let refused = run_fetch(
                    &task_shared,
                    &f,
                    &task_target,
                    &task_req,
                    upstream_headers,
                    stored_meta,
                )
                .await;
                let _ = tx.send(refused);
            });
            // The leader's own failure to connect (refused destination) is reported as such.
            let mut progress = fetch.subscribe();
            let _ = progress
                .wait_for(|p| p.head.is_some() || p.done.is_some())
                .await;
            if progress.borrow().head.is_none()
                && let Ok(Some(f)) = rx.await
            {
                return Err(f);
            }
            return follow(shared, target, req, fetch, true).await;
        }
        Role::Follower(fetch) => fetch,
    };
    follow(shared, target, req, fetch, false).await
}

/// Conditional fields of the client are not sent on a miss: the full object is fetched so it
/// can be stored (the client's conditions are answered from it). Range likewise.
fn miss_headers(headers: &HeaderMap) -> HeaderMap {
    let mut h = headers.clone();
    for name in [
        "if-none-match",
        "if-modified-since",
        "if-match",
        "if-unmodified-since",
        "if-range",
        "range",
    ] {
        h.remove(name);
    }
    h
}

/// Runs the upstream request of a fetch and feeds its body to the file. Returns the refusal
/// or failure when upstream could not be reached.
async fn run_fetch(
    shared: &Arc<Shared>,
    fetch: &Arc<Fetch>,
    target: &Target,
    req: &RequestParts,
    headers: HeaderMap,
    stored: Option<Arc<Meta>>,
) -> Option<Failure> {
    let sent = headers.clone();
    let res = match send(shared, target, Method::GET, headers, empty()).await {
        Ok(r) => r,
        Err(f) => {
            finish(shared, fetch, false).await;
            return Some(f);
        }
    };
    let now = SystemTime::now();
    let (head, mut body) = res.into_parts();
    if head.status == StatusCode::NOT_MODIFIED {
        if let Some(meta) = &stored
            && let Revalidated::NotModified(policy, merged) =
                policy::revalidated(&meta.policy, req, &sent, &head, now)
        {
            let (s, url) = (Arc::clone(shared), fetch.url().to_string());
            // Not persisted (a full disk, say): served from memory now, revalidated again
            // after a restart.
            let _ = tokio::task::spawn_blocking(move || s.store.update_policy(&url, *policy)).await;
            fetch.set_not_modified(merged);
            finish(shared, fetch, false).await;
            return None;
        }
        // A 304 that matches nothing stored cannot be given to a client that did not ask
        // conditionally: drop the stored object, the next request fetches it whole.
        shared.store.remove(fetch.url());
        finish(shared, fetch, false).await;
        return Some(Failure::Upstream(
            "upstream answered 304 for an object not stored".into(),
        ));
    }
    let expected = head
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let meta = policy::new_policy(req, &head, now).map(|policy| Meta {
        url: fetch.url().to_string(),
        policy,
    });
    let too_big = expected.is_some_and(|n| n > shared.store.config().object_max);
    let meta = meta.filter(|_| !too_big);
    if fetch.set_head(head, meta.as_ref()).is_err() {
        finish(shared, fetch, false).await;
        return None;
    }
    let mut ok = true;
    loop {
        match body.frame().await {
            None => break,
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    shared.metrics.add_bytes_from_upstream(data.len() as u64);
                    if fetch.write(&data).is_err() {
                        ok = false;
                        break;
                    }
                }
            }
            Some(Err(_)) => {
                ok = false;
                break;
            }
        }
    }
    let written = fetch.subscribe().borrow().written;
    if expected.is_some_and(|n| n != written) {
        ok = false;
    }
    finish(shared, fetch, ok).await;
    None
}

async fn finish(shared: &Arc<Shared>, fetch: &Arc<Fetch>, complete: bool) {
    let (s, f) = (Arc::clone(shared), Arc::clone(fetch));
    let _ = tokio::task::spawn_blocking(move || s.store.finish(&f, complete)).await;
}

/// Streams a fetch's response to one client, from the file as it grows.
async fn follow(
    shared: &Arc<Shared>,
    target: &Target,
    req: RequestParts,
    fetch: Arc<Fetch>,
    leader: bool,
) -> Result<Response<Body>, Failure> {
    let mut rx = fetch.subscribe();
    let _ = rx.wait_for(|p| p.head.is_some() || p.done.is_some()).await;
    let progress = rx.borrow().clone();
    let Some(head) = progress.head.clone() else {
        return Err(Failure::Upstream(format!(
            "fetching {} failed",
            fetch.url()
        )));
    };
    if progress.not_modified {
        let Some(obj) = shared.store.get(fetch.url()) else {
            return Err(Failure::Upstream("stored object went away".into()));
        };
        shared.metrics.add_revalidated(1);
        return Ok(serve_object(
            shared,
            &req,
            (*head).clone(),
            obj,
            "REVALIDATED",
        ));
    }
    if !progress.shareable && !leader {
        // Not storable: this client's request goes upstream on its own.
        return pass_through(shared, target, req, empty()).await;
    }
    shared.metrics.add_misses(1);
    let head = client_head(shared, (*head).clone(), "MISS");
    let (mut tx, body) = http_body_util::channel::Channel::<Bytes, io::Error>::new(4);
    let metrics = Arc::clone(shared);
    tokio::spawn(async move {
        let mut at = 0u64;
        loop {
            let _ = rx.wait_for(|p| p.written > at || p.done.is_some()).await;
            let p = rx.borrow().clone();
            if p.written > at {
                let n = (p.written - at).min(1 << 20);
                let f = Arc::clone(&fetch);
                let offset = p.body_offset + at;
                let chunk = tokio::task::spawn_blocking(move || {
                    let mut buf = vec![0u8; usize::try_from(n).unwrap_or(0)];
                    std::os::unix::fs::FileExt::read_exact_at(f.file(), &mut buf, offset)
                        .map(|()| buf)
                })
                .await;
                match chunk {
                    Ok(Ok(buf)) => {
                        at += buf.len() as u64;
                        metrics.metrics.add_bytes_to_clients(buf.len() as u64);
                        if tx.send_data(Bytes::from(buf)).await.is_err() {
                            return;
                        }
                    }
                    _ => {
                        tx.abort(io::Error::other("reading the cache file failed"));
                        return;
                    }
                }
            } else if p.done == Some(true) {
                return;
            } else {
                tx.abort(io::Error::other("upstream response was cut short"));
                return;
            }
        }
    });
    Ok(Response::from_parts(head, body.boxed()))
}

/// Serves a stored object: the whole body, a range of it, or 304 for the client's own
/// conditions.
fn serve_object(
    shared: &Arc<Shared>,
    req: &RequestParts,
    head: ResponseParts,
    obj: Object,
    cache: &'static str,
) -> Response<Body> {
    let mut head = client_head(shared, head, cache);
    if head.status == StatusCode::OK && policy::client_not_modified(&req.headers, &head.headers) {
        head.status = StatusCode::NOT_MODIFIED;
        head.headers.remove(header::CONTENT_LENGTH);
        return Response::from_parts(head, empty());
    }
    let len = obj.body_len;
    let (start, end) = match (head.status, policy::range(&req.headers, len)) {
        (StatusCode::OK, RangeAnswer::Partial { start, end }) => {
            head.status = StatusCode::PARTIAL_CONTENT;
            if let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{end}/{len}")) {
                head.headers.insert(header::CONTENT_RANGE, v);
            }
            (start, end + 1)
        }
        (StatusCode::OK, RangeAnswer::Unsatisfiable) => {
            let mut res = text(StatusCode::RANGE_NOT_SATISFIABLE, "range not satisfiable\n");
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                res.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return res;
        }
        _ => (0, len),
    };
    head.headers
        .insert(header::CONTENT_LENGTH, HeaderValue::from(end - start));
    head.headers.remove(header::TRANSFER_ENCODING);
    shared.metrics.add_bytes_to_clients(end - start);
    if let Some(mem) = &obj.memory {
        let s = usize::try_from(start).unwrap_or(0);
        let e = usize::try_from(end).unwrap_or(0).min(mem.len());
        return Response::from_parts(head, full(mem.slice(s..e)));
    }
    let (mut tx, body) = http_body_util::channel::Channel::<Bytes, io::Error>::new(2);
    let shared = Arc::clone(shared);
    let promote = len <= shared.store.config().memory_object_max && start == 0 && end == len;
    tokio::spawn(async move {
        let path = obj.path.clone();
        let file = match tokio::task::spawn_blocking(move || std::fs::File::open(path)).await {
            Ok(Ok(f)) => Arc::new(f),
            _ => {
                tx.abort(io::Error::other("opening the cache file failed"));
                return;
            }
        };
        let mut at = start;
        let mut whole = Vec::new();
        while at < end {
            let n = (end - at).min(1 << 20);
            let f = Arc::clone(&file);
            let offset = obj.body_offset + at;
            let chunk = tokio::task::spawn_blocking(move || {
                let mut buf = vec![0u8; usize::try_from(n).unwrap_or(0)];
                std::os::unix::fs::FileExt::read_exact_at(&*f, &mut buf, offset).map(|()| buf)
            })
            .await;
            let Ok(Ok(buf)) = chunk else {
                tx.abort(io::Error::other("reading the cache file failed"));
                return;
            };
            at += buf.len() as u64;
            if promote {
                whole.extend_from_slice(&buf);
            }
            if tx.send_data(Bytes::from(buf)).await.is_err() {
                return;
            }
        }
        if promote {
            shared.store.promote(&obj.meta.url, Bytes::from(whole));
        }
    });
    Response::from_parts(head, body.boxed())
}
