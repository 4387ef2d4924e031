//! CONNECT tunnels, direct or through the parent proxy.

use std::sync::Arc;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::request::Target;

use super::dial::{Parent, dial};
use super::{Body, Failure, Shared, empty, text};

/// Opens a CONNECT tunnel: dials the target (ACL-checked), answers 200, then copies bytes
/// both ways.
pub(super) async fn connect(
    shared: Arc<Shared>,
    target: Target,
    req: Request<Incoming>,
) -> Response<Body> {
    let upstream = match &shared.parent {
        None => dial(&shared.dialer, &target.host, target.port).await,
        Some(p) => parent_connect(&shared, p.clone(), &target).await,
    };
    let mut upstream = match upstream {
        Ok(s) => s,
        Err(Failure::Refused(r)) => {
            shared.metrics.add_refused(1);
            return text(r.status(), &format!("{r}\n"));
        }
        Err(Failure::Upstream(m)) => {
            return text(StatusCode::BAD_GATEWAY, &format!("upstream: {m}\n"));
        }
    };
    shared.metrics.add_tunnels(1);
    tokio::spawn(async move {
        if let Ok(upgraded) = hyper::upgrade::on(req).await {
            let mut client = TokioIo::new(upgraded);
            if let Ok((_, down)) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
                shared.metrics.add_bytes_to_clients(down);
                shared.metrics.add_bytes_from_upstream(down);
            }
        }
    });
    Response::new(empty())
}

/// A tunnel through the parent proxy: CONNECT there, with credentials.
async fn parent_connect(
    shared: &Shared,
    parent: Parent,
    target: &Target,
) -> Result<TcpStream, Failure> {
    let mut s = dial(&shared.dialer, &target.host, target.port).await?;
    let host = if target.host.contains(':') {
        format!("[{}]", target.host)
    } else {
        target.host.clone()
    };
    let mut head = format!(
        "CONNECT {host}:{} HTTP/1.1\r\nHost: {host}:{}\r\n",
        target.port, target.port
    );
    if let Some(a) = parent.auth.as_ref().and_then(|a| a.to_str().ok()) {
        head.push_str(&format!("Proxy-Authorization: {a}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes())
        .await
        .map_err(|e| Failure::Upstream(e.to_string()))?;
    let mut buf = Vec::with_capacity(1024);
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if buf.len() > 16 * 1024
            || s.read(&mut byte)
                .await
                .map_err(|e| Failure::Upstream(e.to_string()))?
                == 0
        {
            return Err(Failure::Upstream(
                "parent proxy closed the tunnel request".into(),
            ));
        }
        buf.push(byte[0]);
    }
    let line = String::from_utf8_lossy(&buf);
    if line.split_whitespace().nth(1) != Some("200") {
        return Err(Failure::Upstream(format!(
            "parent proxy refused the tunnel: {}",
            line.lines().next().unwrap_or_default()
        )));
    }
    Ok(s)
}
