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

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use anyhow::{Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::dns::{Entry, Registry};
use crate::net::IMDS_ADDR;

/// Binds 169.254.169.254:80; call from a thread inside the namespace.
pub fn bind() -> Result<std::net::TcpListener> {
    let sa = SocketAddr::from((IMDS_ADDR, 80));
    let l = std::net::TcpListener::bind(sa).with_context(|| format!("binding IMDS {sa}"))?;
    l.set_nonblocking(true)?;
    Ok(l)
}

pub async fn serve(listener: std::net::TcpListener, registry: Registry) -> Result<()> {
    let listener = tokio::net::TcpListener::from_std(listener)?;
    loop {
        let (mut stream, peer) = listener.accept().await?;
        let registry = registry.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 8192];
            let mut n = 0;
            // Read until the end of the request head.
            while n < buf.len() {
                match stream.read(&mut buf[n..]).await {
                    Ok(0) | Err(_) => break,
                    Ok(k) => n += k,
                }
                if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
            let head = String::from_utf8_lossy(&buf[..n]).to_string();
            let (status, body) = respond(&head, peer.ip(), &registry);
            let reason = match status {
                200 => "OK",
                404 => "Not Found",
                _ => "Bad Request",
            };
            let mut out = format!(
                "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            )
            .into_bytes();
            out.extend_from_slice(&body);
            let _ = stream.write_all(&out).await;
            let _ = stream.shutdown().await;
        });
    }
}

/// Status and body for one request head.
pub fn respond(head: &str, peer: IpAddr, registry: &Registry) -> (u16, Vec<u8>) {
    let mut lines = head.lines();
    let mut first = lines.next().unwrap_or_default().split_whitespace();
    let (method, path) = (
        first.next().unwrap_or_default(),
        first.next().unwrap_or("/"),
    );
    if method != "GET" && method != "HEAD" {
        return (400, b"only GET\n".to_vec());
    }
    let mut source = match peer {
        IpAddr::V4(v4) => v4,
        IpAddr::V6(v6) => v6.to_ipv4_mapped().unwrap_or(Ipv4Addr::UNSPECIFIED),
    };
    let local = source == IMDS_ADDR || source == crate::net::GATEWAY || source.is_loopback();
    if local {
        for l in lines {
            if let Some((k, v)) = l.split_once(':') {
                if k.trim().eq_ignore_ascii_case("x-kubebake-source") {
                    if let Ok(ip) = v.trim().parse() {
                        source = ip;
                    }
                }
            }
        }
    }
    let Some(e) = registry.by_ip(source) else {
        return (404, format!("no instance at {source}\n").into_bytes());
    };
    let path = path.split('?').next().unwrap_or_default();
    match route(path, &e) {
        Some(b) => (200, b),
        None => (404, b"not found\n".to_vec()),
    }
}

fn route(path: &str, e: &Entry) -> Option<Vec<u8>> {
    let hostname = format!("{}.{}.k8s", e.name, e.cluster);
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
        let get = |p: &str, from: IpAddr| respond(&format!("GET {p} HTTP/1.1\r\n\r\n"), from, &r);
        assert_eq!(
            get("/latest/user-data", vm),
            (200, b"#cloud-config\n".to_vec())
        );
        assert_eq!(get("/latest/meta-data/local-ipv4", vm).1, b"10.77.0.11");
        assert_eq!(get("/latest/meta-data/hostname", vm).1, b"n1.demo.k8s");
        assert_eq!(
            get("/latest/user-data", "10.77.0.12".parse().expect("ip")).0,
            404
        );
        let gw: IpAddr = "10.77.0.1".parse().expect("ip");
        let (code, body) = respond(
            "GET /latest/meta-data/instance-id HTTP/1.1\r\nX-Kubebake-Source: 10.77.0.11\r\n\r\n",
            gw,
            &r,
        );
        assert_eq!((code, body), (200, b"i-n1".to_vec()));
    }
}
