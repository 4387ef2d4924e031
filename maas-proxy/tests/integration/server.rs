//! The server on loopback against a small origin that counts its connections and requests:
//! upstream connections are kept alive and reused, and a revalidated object stays fresh
//! across a restart (the merged policy is on disk).
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use maas_proxy::acl::AclConfig;
use maas_proxy::server::{Proxy, ProxyConfig};
use maas_proxy::store::StoreConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The bound on every wait of these tests.
const WAIT: Duration = Duration::from_secs(10);

/// What the origin saw.
#[derive(Default)]
struct Seen {
    connections: AtomicUsize,
    requests: AtomicUsize,
    conditional: AtomicUsize,
}

/// An HTTP/1.1 origin with keep-alive: `/fresh/*` is fresh for an hour; `/stale` has
/// `max-age=0` and the validator `"v1"`, and a request carrying `If-None-Match: "v1"` gets
/// 304 with `max-age=3600`.
async fn origin(seen: Arc<Seen>) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            seen.connections.fetch_add(1, Ordering::SeqCst);
            let seen = Arc::clone(&seen);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        let mut chunk = [0u8; 4096];
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                    buf.drain(..end + 4);
                    seen.requests.fetch_add(1, Ordering::SeqCst);
                    let path = head
                        .split_whitespace()
                        .nth(1)
                        .unwrap_or_default()
                        .to_string();
                    let answer = if path.starts_with("/fresh/") {
                        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nCache-Control: max-age=3600\r\n\r\nhello"
                            .to_string()
                    } else if head.contains("if-none-match: \"v1\"") {
                        seen.conditional.fetch_add(1, Ordering::SeqCst);
                        "HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\nCache-Control: max-age=3600\r\n\r\n"
                            .to_string()
                    } else {
                        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nETag: \"v1\"\r\nCache-Control: max-age=0\r\n\r\nstale"
                            .to_string()
                    };
                    if s.write_all(answer.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

fn config(dir: &std::path::Path) -> ProxyConfig {
    ProxyConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        // The origin is on loopback: no denied destinations here.
        acl: AclConfig {
            allow: Vec::new(),
            deny: Vec::new(),
        },
        store: StoreConfig {
            dir: dir.to_path_buf(),
            ..StoreConfig::default()
        },
        ..ProxyConfig::default()
    }
}

/// Starts a proxy on its own task; gives its address.
async fn start(config: ProxyConfig) -> std::net::SocketAddr {
    let proxy = Proxy::new(config).unwrap();
    let listener = proxy.bind().await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { proxy.serve(listener).await });
    addr
}

/// One request through the proxy on a new client connection: (status line, X-Cache, body).
async fn get(proxy: std::net::SocketAddr, url: &str) -> (String, String, String) {
    let host = url.trim_start_matches("http://").split('/').next().unwrap();
    let work = async {
        let mut s = TcpStream::connect(proxy).await.unwrap();
        let req = format!("GET {url} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.unwrap();
        String::from_utf8_lossy(&out).into_owned()
    };
    let text = tokio::time::timeout(WAIT, work)
        .await
        .expect("proxy answers");
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.lines().next().unwrap_or_default().to_string();
    let cache = head
        .lines()
        .find_map(|l| l.strip_prefix("x-cache: "))
        .unwrap_or_default()
        .to_string();
    (status, cache, body.to_string())
}

/// Waits (at most `WAIT`) until the store under `dir` holds `n` objects on disk, then a
/// little longer for the fetch that stored the last one to hand its connection back.
async fn wait_stored(dir: &std::path::Path, n: usize) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let stored = std::fs::read_dir(dir.join("objects")).map_or(0, |entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.path().extension().is_none())
                .count()
        });
        if stored >= n {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{stored} of {n} objects stored after {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn two_misses_to_one_origin_share_one_connection() {
    runtime().block_on(async {
        let seen = Arc::new(Seen::default());
        let origin = origin(Arc::clone(&seen)).await;
        let dir = tempfile::tempdir().unwrap();
        let proxy = start(config(dir.path())).await;
        for path in ["a", "b"] {
            let (status, cache, body) = get(proxy, &format!("http://{origin}/fresh/{path}")).await;
            assert!(status.contains(" 200"), "{status}");
            assert_eq!((cache.as_str(), body.as_str()), ("MISS", "hello"));
            // The fetch is complete once it is stored (the client may have the whole body
            // a moment before); by then the pool has the connection back.
            wait_stored(dir.path(), 1 + usize::from(path == "b")).await;
        }
        let (_, cache, _) = get(proxy, &format!("http://{origin}/fresh/a")).await;
        assert_eq!(cache, "HIT");
        assert_eq!(seen.requests.load(Ordering::SeqCst), 2);
        assert_eq!(
            seen.connections.load(Ordering::SeqCst),
            1,
            "the second miss reuses the first miss's upstream connection"
        );
    });
}

#[test]
fn a_revalidated_object_is_still_fresh_after_a_restart() {
    let seen = Arc::new(Seen::default());
    let dir = tempfile::tempdir().unwrap();
    // The origin outlives both proxies: it runs on a thread of its own until `_stop` drops.
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (_stop, stop) = tokio::sync::oneshot::channel::<()>();
    let origin_seen = Arc::clone(&seen);
    std::thread::spawn(move || {
        runtime().block_on(async move {
            let _ = addr_tx.send(origin(origin_seen).await);
            let _ = stop.await;
        });
    });
    let origin = addr_rx.recv_timeout(WAIT).unwrap();
    let url = format!("http://{origin}/stale");
    {
        let rt = runtime();
        rt.block_on(async {
            let proxy = start(config(dir.path())).await;
            let (status, cache, body) = get(proxy, &url).await;
            assert!(status.contains(" 200"), "{status}");
            assert_eq!((cache.as_str(), body.as_str()), ("MISS", "stale"));
            // The client has the body as soon as it is written; the fetch is stored a moment
            // later (until then, a request joins it).
            wait_stored(dir.path(), 1).await;
            let (status, cache, body) = get(proxy, &url).await;
            assert!(status.contains(" 200"), "{status}");
            assert_eq!((cache.as_str(), body.as_str()), ("REVALIDATED", "stale"));
            assert_eq!(seen.conditional.load(Ordering::SeqCst), 1);
            let (_, cache, _) = get(proxy, &url).await;
            assert_eq!(cache, "HIT", "the 304 made it fresh for an hour");
        });
        // Dropping the runtime stops the proxy (and its tasks), as a restart does.
    }
    assert_eq!(seen.requests.load(Ordering::SeqCst), 2);
    runtime().block_on(async {
        let proxy = start(config(dir.path())).await;
        let (status, cache, body) = get(proxy, &url).await;
        assert!(status.contains(" 200"), "{status}");
        assert_eq!(
            (cache.as_str(), body.as_str()),
            ("HIT", "stale"),
            "the merged policy survived the restart"
        );
    });
    assert_eq!(
        seen.requests.load(Ordering::SeqCst),
        2,
        "no new upstream request after the restart"
    );
}

#[test]
fn connections_over_the_limit_are_closed_at_once() {
    runtime().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let proxy = start(ProxyConfig {
            max_connections: 1,
            ..config(dir.path())
        })
        .await;
        // The first connection holds the only slot (idle, within the header timeout).
        let first = TcpStream::connect(proxy).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut second = TcpStream::connect(proxy).await.unwrap();
        let _ = second
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: proxy\r\n\r\n")
            .await;
        let mut out = Vec::new();
        let read = tokio::time::timeout(WAIT, second.read_to_end(&mut out))
            .await
            .expect("closed, not left waiting");
        assert!(
            read.is_err() || out.is_empty(),
            "no answer over the limit: {:?}",
            String::from_utf8_lossy(&out)
        );
        drop(first);
        // The slot is free again once the first connection is gone.
        let mut ok = false;
        for _ in 0..50 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let mut s = TcpStream::connect(proxy).await.unwrap();
            let _ = s
                .write_all(b"GET /metrics HTTP/1.1\r\nHost: proxy\r\nConnection: close\r\n\r\n")
                .await;
            let mut out = Vec::new();
            let _ = tokio::time::timeout(WAIT, s.read_to_end(&mut out)).await;
            if out.starts_with(b"HTTP/1.1 200") {
                ok = true;
                break;
            }
        }
        assert!(ok, "a connection is served once the slot is free");
    });
}

/// Reads one response from a kept-alive connection: (status line, body).
async fn read_response(s: &mut TcpStream) -> (String, String) {
    let work = async {
        let mut buf = Vec::new();
        let end = loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break end;
            }
            let mut chunk = [0u8; 4096];
            let n = s.read(&mut chunk).await.unwrap();
            assert!(n > 0, "the proxy closed the connection");
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        let length: usize = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length: ")
                    .map(str::to_owned)
            })
            .map_or(0, |v| v.trim().parse().unwrap());
        let mut body = buf[end + 4..].to_vec();
        while body.len() < length {
            let mut chunk = [0u8; 4096];
            let n = s.read(&mut chunk).await.unwrap();
            assert!(n > 0, "the proxy closed the connection mid-body");
            body.extend_from_slice(&chunk[..n]);
        }
        let status = head.lines().next().unwrap_or_default().to_string();
        (status, String::from_utf8_lossy(&body).into_owned())
    };
    tokio::time::timeout(WAIT, work)
        .await
        .expect("proxy answers")
}

#[test]
fn a_destination_denied_at_runtime_is_refused_without_a_restart() {
    runtime().block_on(async {
        let seen = Arc::new(Seen::default());
        let origin = origin(Arc::clone(&seen)).await;
        let dir = tempfile::tempdir().unwrap();
        let proxy = Proxy::new(config(dir.path())).unwrap();
        let listener = proxy.bind().await.unwrap();
        let addr = listener.local_addr().unwrap();
        let serving = proxy.clone();
        tokio::spawn(async move { serving.serve(listener).await });
        // By name, so that the upstream connection is pooled under the name, not checked as
        // a literal address before the pool is asked.
        let port = origin.port();
        let request = |path: &str| {
            format!("GET http://localhost:{port}/fresh/{path} HTTP/1.1\r\nHost: localhost:{port}\r\n\r\n")
        };
        let mut kept = TcpStream::connect(addr).await.unwrap();
        kept.write_all(request("a").as_bytes()).await.unwrap();
        let (status, body) = read_response(&mut kept).await;
        assert!(status.contains(" 200"), "{status}");
        assert_eq!(body, "hello");
        wait_stored(dir.path(), 1).await;

        let origin_net: ipnet::IpNet = "127.0.0.1/32".parse().unwrap();
        proxy.set_denied(vec![origin_net]);
        let denied = proxy.acl().denied().to_vec();
        assert!(denied.contains(&origin_net));
        for d in maas_proxy::acl::default_denied() {
            assert!(denied.contains(&d), "{d} is still denied");
        }

        // The next request of the kept-alive connection: refused, though the pool had an
        // idle connection to the origin.
        kept.write_all(request("b").as_bytes()).await.unwrap();
        let (status, _) = read_response(&mut kept).await;
        assert!(status.contains(" 403"), "{status}");
        // A new connection, by address.
        let (status, _, _) = get(addr, &format!("http://{origin}/fresh/c")).await;
        assert!(status.contains(" 403"), "{status}");
        // A tunnel.
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"CONNECT 127.0.0.1:443 HTTP/1.1\r\nHost: 127.0.0.1:443\r\n\r\n")
            .await
            .unwrap();
        let (status, _) = read_response(&mut s).await;
        assert!(status.contains(" 403"), "{status}");
        assert_eq!(seen.requests.load(Ordering::SeqCst), 1, "nothing more reached the origin");
    });
}
