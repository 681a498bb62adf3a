//! EC2-style instance metadata service at http://169.254.169.254/ inside the
//! cluster namespace. Each VM is identified by its source address and gets
//! its own data:
//!   /latest/user-data                      the launch's user-data, verbatim
//!   /latest/meta-data/                     index
//!   /latest/meta-data/instance-id | local-ipv4 | hostname | local-hostname
//! and, for cloud-init's NoCloud-net datasource
//! (`-smbios type=1,serial=ds=nocloud-net;s=http://169.254.169.254/latest/`):
//!   /latest/meta-data                      NoCloud meta-data YAML (no slash)
//!   /latest/vendor-data                    empty
//! Requests from the namespace itself (the harness, tests) may name the VM
//! with the `X-Kubebake-Source: <vm ip>` header.

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use anyhow::{Context, Result};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

use crate::dns::{Entry, Registry};
use crate::net::IMDS_ADDR;

/// Whether the metadata service is there (fault injection:
/// [`Cluster::set_metadata`](crate::cluster::Cluster::set_metadata)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metadata {
    /// Listening on 169.254.169.254:80, answering every VM.
    Served,
    /// Nothing listens: every connection is refused (TCP RST), as while a
    /// cloud's metadata service is down or not yet reachable.
    Refused,
}

/// Header naming the VM a request from the namespace itself asks about.
const SOURCE_HEADER: &str = "x-kubebake-source";

/// Binds 169.254.169.254:80; call from a thread inside the namespace.
pub fn bind() -> Result<std::net::TcpListener> {
    let sa = SocketAddr::from((IMDS_ADDR, 80));
    let l = std::net::TcpListener::bind(sa).with_context(|| format!("binding IMDS {sa}"))?;
    l.set_nonblocking(true)?;
    Ok(l)
}

/// Serves HTTP/1.1 (hyper) until the runtime stops.
pub async fn serve(listener: std::net::TcpListener, registry: Registry) -> Result<()> {
    let listener = tokio::net::TcpListener::from_std(listener)?;
    loop {
        let (stream, peer) = listener.accept().await?;
        let registry = registry.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let source = req
                    .headers()
                    .get(SOURCE_HEADER)
                    .and_then(|v| v.to_str().ok());
                let (status, body) =
                    respond(req.method(), req.uri().path(), source, peer.ip(), &registry);
                let mut resp = Response::new(Full::new(Bytes::from(body)));
                *resp.status_mut() = status;
                resp.headers_mut()
                    .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
                async move { Ok::<_, Infallible>(resp) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Status and body for one request: `source` is the `X-Kubebake-Source`
/// header, honoured only for requests from the namespace itself.
pub fn respond(
    method: &Method,
    path: &str,
    source: Option<&str>,
    peer: IpAddr,
    registry: &Registry,
) -> (StatusCode, Vec<u8>) {
    if method != Method::GET && method != Method::HEAD {
        return (StatusCode::METHOD_NOT_ALLOWED, b"only GET\n".to_vec());
    }
    let mut from = match peer {
        IpAddr::V4(v4) => v4,
        IpAddr::V6(v6) => v6.to_ipv4_mapped().unwrap_or(Ipv4Addr::UNSPECIFIED),
    };
    let local = from == IMDS_ADDR || from == crate::net::GATEWAY || from.is_loopback();
    if local {
        if let Some(ip) = source.and_then(|s| s.trim().parse().ok()) {
            from = ip;
        }
    }
    let Some(e) = registry.by_ip(from) else {
        return (
            StatusCode::NOT_FOUND,
            format!("no instance at {from}\n").into_bytes(),
        );
    };
    match route(path, &e, &registry.domain) {
        Some(b) => (StatusCode::OK, b),
        None => (StatusCode::NOT_FOUND, b"not found\n".to_vec()),
    }
}

fn route(path: &str, e: &Entry, domain: &str) -> Option<Vec<u8>> {
    let hostname = format!("{}.{}.{domain}", e.name, e.cluster);
    let s = |x: &str| Some(x.as_bytes().to_vec());
    match path {
        "/" => s("latest\n"),
        "/latest" | "/latest/" => s("dynamic\nmeta-data\nuser-data\n"),
        "/latest/user-data" => Some(e.user_data.clone()),
        "/latest/meta-data" => s(&e.meta_data),
        "/latest/meta-data/" => s("hostname\ninstance-id\nlocal-hostname\nlocal-ipv4\n"),
        "/latest/meta-data/instance-id" => s(&e.instance_id),
        "/latest/meta-data/local-ipv4" => s(&e.ip.to_string()),
        "/latest/meta-data/hostname" | "/latest/meta-data/local-hostname" => s(&hostname),
        "/latest/vendor-data" => s(""),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serves_per_source() {
        let r = Registry::new("k8s");
        r.add(Entry {
            name: "n1".into(),
            cluster: "demo".into(),
            role: None,
            ip: Ipv4Addr::new(10, 77, 0, 11),
            mac: [0; 6],
            user_data: b"#cloud-config\n".to_vec(),
            instance_id: "i-n1".into(),
            meta_data: "instance-id: i-n1\n".into(),
        });
        let vm: IpAddr = "10.77.0.11".parse().expect("ip");
        let get = |p: &str, from: IpAddr| respond(&Method::GET, p, None, from, &r);
        assert_eq!(
            get("/latest/user-data", vm),
            (StatusCode::OK, b"#cloud-config\n".to_vec())
        );
        assert_eq!(get("/latest/meta-data/local-ipv4", vm).1, b"10.77.0.11");
        assert_eq!(get("/latest/meta-data/hostname", vm).1, b"n1.demo.k8s");
        assert_eq!(
            get("/latest/user-data", "10.77.0.12".parse().expect("ip")).0,
            StatusCode::NOT_FOUND
        );
        let gw: IpAddr = "10.77.0.1".parse().expect("ip");
        let (code, body) = respond(
            &Method::GET,
            "/latest/meta-data/instance-id",
            Some("10.77.0.11"),
            gw,
            &r,
        );
        // The header is honoured only from the namespace itself.
        assert_eq!(
            respond(
                &Method::GET,
                "/latest/user-data",
                Some("10.77.0.11"),
                "10.77.0.12".parse().expect("ip"),
                &r
            )
            .0,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            respond(&Method::POST, "/latest/user-data", None, vm, &r).0,
            StatusCode::METHOD_NOT_ALLOWED
        );
        assert_eq!((code, body), (StatusCode::OK, b"i-n1".to_vec()));
    }
}
