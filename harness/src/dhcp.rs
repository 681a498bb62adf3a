//! A minimal DHCP server (RFC 2131/2132 subset) for the VPC: each VM gets its
//! fixed address (a reservation by MAC from the [`Registry`]), the gateway as
//! router and DNS server, the search domain `<cluster>.<domain>` and its
//! hostname. dhclient in the guest then writes /etc/resolv.conf, as on a
//! real cloud. Unknown MACs get no answer.
//!
//! Hand-written rather than via the dhcproto crate: it would pull a second
//! hickory-proto version into the build for ~150 lines of packet layout.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::dns::{Entry, Registry};
use crate::net::{BRIDGE, GATEWAY};

const MAGIC: [u8; 4] = [99, 130, 83, 99];
const LEASE_SECS: u32 = 86400;

const DISCOVER: u8 = 1;
const OFFER: u8 = 2;
const REQUEST: u8 = 3;
const ACK: u8 = 5;
const INFORM: u8 = 8;

/// Binds 0.0.0.0:67 on the bridge; call from a thread inside the namespace.
pub fn bind() -> Result<UdpSocket> {
    let sock = UdpSocket::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 67)))
        .context("binding DHCP udp 0.0.0.0:67")?;
    sock.set_broadcast(true)?;
    nix::sys::socket::setsockopt(
        &sock,
        nix::sys::socket::sockopt::BindToDevice,
        &std::ffi::OsString::from(BRIDGE),
    )
    .context("SO_BINDTODEVICE on the bridge")?;
    sock.set_read_timeout(Some(Duration::from_millis(500)))?;
    Ok(sock)
}

/// Serves until `stop` is set.
pub fn serve(sock: UdpSocket, registry: Registry, stop: Arc<AtomicBool>) {
    let mut buf = [0u8; 1500];
    while !stop.load(Ordering::Relaxed) {
        let n = match sock.recv_from(&mut buf) {
            Ok((n, _)) => n,
            Err(_) => continue,
        };
        let Some(req) = parse(&buf[..n]) else {
            continue;
        };
        let Some(entry) = registry.by_mac(&req.chaddr) else {
            continue;
        };
        let reply_type = match req.msg_type {
            DISCOVER => OFFER,
            REQUEST | INFORM => ACK,
            _ => continue,
        };
        let reply = build_reply(&buf[..n], &req, reply_type, &entry, &registry.domain);
        let dst = SocketAddr::from((Ipv4Addr::BROADCAST, 68));
        if let Err(e) = sock.send_to(&reply, dst) {
            eprintln!("vm dhcp: sending to {}: {e}", entry.name);
        }
    }
}

#[derive(Debug)]
struct Req {
    msg_type: u8,
    chaddr: [u8; 6],
}

fn parse(p: &[u8]) -> Option<Req> {
    if p.len() < 240 || p[0] != 1 || p[1] != 1 || p[2] != 6 || p[236..240] != MAGIC {
        return None;
    }
    let mut chaddr = [0u8; 6];
    chaddr.copy_from_slice(&p[28..34]);
    let mut i = 240;
    let mut msg_type = 0;
    while i < p.len() {
        let code = p[i];
        if code == 255 {
            break;
        }
        if code == 0 {
            i += 1;
            continue;
        }
        let len = *p.get(i + 1)? as usize;
        let val = p.get(i + 2..i + 2 + len)?;
        if code == 53 && len == 1 {
            msg_type = val[0];
        }
        i += 2 + len;
    }
    Some(Req { msg_type, chaddr })
}

fn build_reply(req_raw: &[u8], _req: &Req, msg_type: u8, e: &Entry, domain: &str) -> Vec<u8> {
    let mut p = vec![0u8; 240];
    p[0] = 2; // BOOTREPLY
    p[1] = 1;
    p[2] = 6;
    p[4..8].copy_from_slice(&req_raw[4..8]); // xid
    p[10..12].copy_from_slice(&req_raw[10..12]); // flags
    p[16..20].copy_from_slice(&e.ip.octets()); // yiaddr
    p[20..24].copy_from_slice(&GATEWAY.octets()); // siaddr
    p[28..44].copy_from_slice(&req_raw[28..44]); // chaddr
    p[236..240].copy_from_slice(&MAGIC);
    let search = format!("{}.{}", e.cluster, domain);
    let mut opt = |code: u8, val: &[u8]| {
        p.push(code);
        p.push(val.len() as u8);
        p.extend_from_slice(val);
    };
    opt(53, &[msg_type]);
    opt(54, &GATEWAY.octets());
    opt(51, &LEASE_SECS.to_be_bytes());
    opt(58, &(LEASE_SECS / 2).to_be_bytes());
    opt(59, &(LEASE_SECS / 8 * 7).to_be_bytes());
    opt(1, &[255, 255, 255, 0]);
    opt(28, &[10, 77, 0, 255]);
    opt(3, &GATEWAY.octets());
    opt(6, &GATEWAY.octets());
    opt(15, search.as_bytes());
    opt(12, e.name.as_bytes());
    p.push(255);
    while p.len() < 300 {
        p.push(0);
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discover_gets_offer_with_reservation() {
        let mut d = vec![0u8; 240];
        d[0] = 1;
        d[1] = 1;
        d[2] = 6;
        d[4..8].copy_from_slice(&[1, 2, 3, 4]);
        d[28..34].copy_from_slice(&[0x52, 0x54, 0, 1, 2, 3]);
        d[236..240].copy_from_slice(&MAGIC);
        d.extend_from_slice(&[53, 1, DISCOVER, 255]);
        let r = parse(&d).expect("parses");
        assert_eq!(r.msg_type, DISCOVER);
        let e = Entry {
            name: "n1".into(),
            cluster: "demo".into(),
            role: None,
            ip: Ipv4Addr::new(10, 77, 0, 11),
            mac: r.chaddr,
            user_data: vec![],
            instance_id: "i-1".into(),
            meta_data: String::new(),
        };
        let out = build_reply(&d, &r, OFFER, &e, "k8s");
        assert_eq!(out[0], 2);
        assert_eq!(&out[4..8], &[1, 2, 3, 4]);
        assert_eq!(&out[16..20], &[10, 77, 0, 11]);
        assert_eq!(&out[240..243], &[53, 1, OFFER]);
        let s = String::from_utf8_lossy(&out);
        assert!(s.contains("demo.k8s"));
    }
}
