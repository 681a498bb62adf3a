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
use crate::net::{BRIDGE, GATEWAY, PREFIX};

const MAGIC: [u8; 4] = [99, 130, 83, 99];
const LEASE_SECS: u32 = 86400;

/// DHCP option codes (RFC 2132) the server reads or writes.
mod opt {
    pub const PAD: u8 = 0;
    pub const SUBNET_MASK: u8 = 1;
    pub const ROUTER: u8 = 3;
    pub const DNS_SERVER: u8 = 6;
    pub const HOST_NAME: u8 = 12;
    pub const DOMAIN_NAME: u8 = 15;
    pub const BROADCAST: u8 = 28;
    pub const LEASE_TIME: u8 = 51;
    pub const MESSAGE_TYPE: u8 = 53;
    pub const SERVER_ID: u8 = 54;
    pub const RENEWAL_TIME: u8 = 58;
    pub const REBINDING_TIME: u8 = 59;
    pub const END: u8 = 255;
}

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
        let reply = match build_reply(&buf[..n], &req, reply_type, &entry, &registry.domain) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("vm dhcp: no reply to {}: {e:#}", entry.name);
                continue;
            }
        };
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
        if code == opt::END {
            break;
        }
        if code == opt::PAD {
            i += 1;
            continue;
        }
        let len = *p.get(i + 1)? as usize;
        let val = p.get(i + 2..i + 2 + len)?;
        if code == opt::MESSAGE_TYPE && len == 1 {
            msg_type = val[0];
        }
        i += 2 + len;
    }
    Some(Req { msg_type, chaddr })
}

fn build_reply(
    req_raw: &[u8],
    _req: &Req,
    msg_type: u8,
    e: &Entry,
    domain: &str,
) -> Result<Vec<u8>> {
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
    let mask = u32::MAX << (32 - u32::from(PREFIX));
    let broadcast = u32::from(GATEWAY) | !mask;
    let search = format!("{}.{}", e.cluster, domain);
    let options: [(u8, &[u8]); 11] = [
        (opt::MESSAGE_TYPE, &[msg_type]),
        (opt::SERVER_ID, &GATEWAY.octets()),
        (opt::LEASE_TIME, &LEASE_SECS.to_be_bytes()),
        (opt::RENEWAL_TIME, &(LEASE_SECS / 2).to_be_bytes()),
        (opt::REBINDING_TIME, &(LEASE_SECS / 8 * 7).to_be_bytes()),
        (opt::SUBNET_MASK, &mask.to_be_bytes()),
        (opt::BROADCAST, &broadcast.to_be_bytes()),
        (opt::ROUTER, &GATEWAY.octets()),
        (opt::DNS_SERVER, &GATEWAY.octets()),
        (opt::DOMAIN_NAME, search.as_bytes()),
        (opt::HOST_NAME, e.name.as_bytes()),
    ];
    for (code, val) in options {
        // An option's length is one byte: refuse rather than truncate.
        let len = u8::try_from(val.len()).map_err(|_| {
            anyhow::anyhow!("DHCP option {code} is {} bytes, at most 255 fit", val.len())
        })?;
        p.push(code);
        p.push(len);
        p.extend_from_slice(val);
    }
    p.push(opt::END);
    while p.len() < 300 {
        p.push(opt::PAD);
    }
    Ok(p)
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
        let out = build_reply(&d, &r, OFFER, &e, "k8s").expect("reply");
        assert_eq!(out[0], 2);
        assert_eq!(&out[4..8], &[1, 2, 3, 4]);
        assert_eq!(&out[16..20], &[10, 77, 0, 11]);
        assert_eq!(&out[240..243], &[53, 1, OFFER]);
        let s = String::from_utf8_lossy(&out);
        assert!(s.contains("demo.k8s"));
        // Subnet mask and broadcast follow the VPC prefix.
        let at = |code: u8| {
            out.windows(2)
                .position(|w| w == [code, 4])
                .map(|i| &out[i + 2..i + 6])
        };
        assert_eq!(at(opt::SUBNET_MASK), Some(&[255, 255, 255, 0][..]));
        assert_eq!(at(opt::BROADCAST), Some(&[10, 77, 0, 255][..]));
        // A value longer than an option can hold is refused, not truncated.
        let long = "a".repeat(300);
        assert!(build_reply(&d, &r, OFFER, &e, &long).is_err());
    }
}
