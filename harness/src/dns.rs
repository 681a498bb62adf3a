//! DNS like Route53 + a registration Lambda: an authoritative server for
//! `k8s.` (the cluster domain) answering
//!   masters.<cluster>.<domain>  A records of the running master VMs
//!   minions.<cluster>.<domain>  A records of the running minion VMs
//!   <vm-name>.<cluster>.<domain>
//! from the shared [`Registry`], which the cluster updates as VMs start and
//! stop. Built on hickory-server (custom `RequestHandler`); its UDP and TCP
//! sockets are bound to the gateway address inside the cluster namespace.
//! Names outside the domain get REFUSED (the VPC has no internet).

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hickory_proto::op::{Header, HeaderCounts, MessageType, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::{rdata::A, DNSClass, RData, Record, RecordType};
use hickory_server::net::runtime::Time;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;

use crate::Role;

/// One VM as the VPC sees it.
#[derive(Debug, Clone)]
pub struct Entry {
    pub name: String,
    pub cluster: String,
    pub role: Option<Role>,
    pub ip: Ipv4Addr,
    pub mac: [u8; 6],
    /// Served by the metadata service at /latest/user-data.
    pub user_data: Vec<u8>,
    pub instance_id: String,
    /// NoCloud meta-data YAML (served at /latest/meta-data for NoCloud-net).
    pub meta_data: String,
}

/// Shared VPC state: the running VMs. Cheap to clone.
#[derive(Clone, Default)]
pub struct Registry {
    inner: Arc<RwLock<Vec<Entry>>>,
    /// Names whose records are withdrawn (fault injection): answered as if
    /// no VM backed them, whatever runs.
    withdrawn: Arc<RwLock<BTreeSet<String>>>,
    pub domain: Arc<String>,
}

impl Registry {
    pub fn new(domain: &str) -> Self {
        Registry {
            inner: Arc::default(),
            withdrawn: Arc::default(),
            domain: Arc::new(domain.trim_end_matches('.').to_string()),
        }
    }

    pub fn add(&self, e: Entry) {
        if let Ok(mut v) = self.inner.write() {
            v.retain(|x| x.name != e.name);
            v.push(e);
        }
    }

    pub fn remove(&self, name: &str) {
        if let Ok(mut v) = self.inner.write() {
            v.retain(|x| x.name != name);
        }
    }

    /// Withdraws the records of `name` (`masters.demo.k8s`, with or without
    /// the trailing dot) until [`restore`](Self::restore): a role name then
    /// answers NODATA (as before any VM of that role runs), a VM's name
    /// NXDOMAIN. Like deleting the record set in Route53; the VMs keep
    /// running and keep their addresses.
    pub fn withdraw(&self, name: &str) {
        if let Ok(mut w) = self.withdrawn.write() {
            w.insert(normalize(name));
        }
    }

    /// Serves the records of `name` again.
    pub fn restore(&self, name: &str) {
        if let Ok(mut w) = self.withdrawn.write() {
            w.remove(&normalize(name));
        }
    }

    fn is_withdrawn(&self, name: &str) -> bool {
        self.withdrawn.read().is_ok_and(|w| w.contains(name))
    }

    pub fn entries(&self) -> Vec<Entry> {
        self.inner.read().map(|v| v.clone()).unwrap_or_default()
    }

    pub fn by_ip(&self, ip: Ipv4Addr) -> Option<Entry> {
        self.entries().into_iter().find(|e| e.ip == ip)
    }

    pub fn by_mac(&self, mac: &[u8]) -> Option<Entry> {
        self.entries().into_iter().find(|e| e.mac[..] == *mac)
    }

    /// A records for `name` (lowercase, without trailing dot); `None` when
    /// the name does not exist (NXDOMAIN), `Some(empty)` for existing names
    /// with no address (e.g. `masters.demo.k8s` before the master starts;
    /// answered NODATA).
    pub fn lookup(&self, name: &str) -> Option<Vec<Ipv4Addr>> {
        let name = normalize(name);
        let rest = name.strip_suffix(&format!(".{}", self.domain))?;
        let (label, cluster) = rest.split_once('.')?;
        if self.is_withdrawn(&name) {
            return matches!(label, "masters" | "minions").then(Vec::new);
        }
        let entries = self.entries();
        let in_cluster = entries.iter().filter(|e| e.cluster == cluster);
        let ips: Vec<Ipv4Addr> = match label {
            "masters" => in_cluster
                .filter(|e| e.role == Some(Role::Master))
                .map(|e| e.ip)
                .collect(),
            "minions" => in_cluster
                .filter(|e| e.role == Some(Role::Minion))
                .map(|e| e.ip)
                .collect(),
            vm => {
                let ips: Vec<_> = in_cluster.filter(|e| e.name == vm).map(|e| e.ip).collect();
                if ips.is_empty() {
                    return None;
                }
                ips
            }
        };
        Some(ips)
    }
}

/// A DNS name as the registry keys it: lowercase, no trailing dot.
fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// The hickory request handler over the registry.
pub struct Handler {
    registry: Registry,
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let mut meta = Metadata::response_from_request(&request.metadata);
        meta.message_type = MessageType::Response;
        meta.recursion_available = false;
        let builder = MessageResponseBuilder::from_message_request(request);
        let query = match request.queries.queries() {
            [q] if request.metadata.op_code == OpCode::Query => q,
            _ => {
                let resp = builder.error_msg(&request.metadata, ResponseCode::Refused);
                return send(&mut response_handle, resp, request).await;
            }
        };
        let owner = query.original().name().clone();
        let qname = owner.to_string();
        let domain = format!("{}.", self.registry.domain);
        let qname_l = qname.to_ascii_lowercase();
        if !(qname_l == domain || qname_l.ends_with(&format!(".{domain}"))) {
            let resp = builder.error_msg(&request.metadata, ResponseCode::Refused);
            return send(&mut response_handle, resp, request).await;
        }
        meta.authoritative = true;
        let records: Vec<Record> = match self.registry.lookup(&qname_l) {
            None => {
                meta.response_code = ResponseCode::NXDomain;
                Vec::new()
            }
            Some(ips) => {
                if query.query_type() == RecordType::A || query.query_type() == RecordType::ANY {
                    ips.iter()
                        .map(|ip| {
                            let mut r = Record::from_rdata(owner.clone(), 1, RData::A(A(*ip)));
                            r.dns_class = DNSClass::IN;
                            r
                        })
                        .collect()
                } else {
                    Vec::new()
                }
            }
        };
        let resp = builder.build(meta, records.iter(), [], [], []);
        send(&mut response_handle, resp, request).await
    }
}

async fn send<'a, R: ResponseHandler>(
    h: &mut R,
    resp: hickory_server::zone_handler::MessageResponse<
        '_,
        'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
    >,
    request: &Request,
) -> ResponseInfo {
    match h.send_response(resp).await {
        Ok(i) => i,
        Err(e) => {
            eprintln!("vm dns: failed to send a response: {e}");
            let mut metadata = Metadata::new(
                request.metadata.id,
                MessageType::Response,
                request.metadata.op_code,
            );
            metadata.response_code = ResponseCode::ServFail;
            ResponseInfo::from(Header {
                metadata,
                counts: HeaderCounts::default(),
            })
        }
    }
}

/// Sockets for the DNS server, opened inside the namespace.
pub struct Sockets {
    pub udp: std::net::UdpSocket,
    pub tcp: std::net::TcpListener,
}

/// Binds UDP and TCP port 53 on `addr`; call from a thread inside the
/// cluster namespace.
pub fn bind(addr: Ipv4Addr) -> anyhow::Result<Sockets> {
    use anyhow::Context;
    let sa = SocketAddr::from((addr, 53));
    let udp = std::net::UdpSocket::bind(sa).with_context(|| format!("binding DNS udp {sa}"))?;
    let tcp = std::net::TcpListener::bind(sa).with_context(|| format!("binding DNS tcp {sa}"))?;
    udp.set_nonblocking(true)?;
    tcp.set_nonblocking(true)?;
    Ok(Sockets { udp, tcp })
}

/// Serves DNS from `registry` on the given sockets until the runtime stops.
pub async fn serve(sockets: Sockets, registry: Registry) -> anyhow::Result<()> {
    let mut server = hickory_server::Server::new(Handler { registry });
    server.register_socket(tokio::net::UdpSocket::from_std(sockets.udp)?);
    server.register_listener(
        tokio::net::TcpListener::from_std(sockets.tcp)?,
        Duration::from_secs(5),
        4096,
    );
    server.block_until_done().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, role: Option<Role>, last: u8) -> Entry {
        Entry {
            name: name.into(),
            cluster: "demo".into(),
            role,
            ip: Ipv4Addr::new(10, 77, 0, last),
            mac: [0, 0, 0, 0, 0, last],
            user_data: Vec::new(),
            instance_id: format!("i-{name}"),
            meta_data: String::new(),
        }
    }

    #[test]
    fn lookup_by_role_and_name() {
        let r = Registry::new("k8s");
        assert_eq!(r.lookup("masters.demo.k8s."), Some(vec![]));
        r.add(entry("m1", Some(Role::Master), 10));
        r.add(entry("n1", Some(Role::Minion), 11));
        r.add(entry("n2", Some(Role::Minion), 12));
        assert_eq!(
            r.lookup("masters.demo.k8s."),
            Some(vec![Ipv4Addr::new(10, 77, 0, 10)])
        );
        assert_eq!(r.lookup("MINIONS.demo.k8s").map(|v| v.len()), Some(2));
        assert_eq!(
            r.lookup("n2.demo.k8s."),
            Some(vec![Ipv4Addr::new(10, 77, 0, 12)])
        );
        assert_eq!(r.lookup("n3.demo.k8s."), None);
        assert_eq!(r.lookup("masters.other.k8s.").map(|v| v.len()), Some(0));
        assert_eq!(r.lookup("example.com."), None);
        r.remove("n1");
        assert_eq!(r.lookup("minions.demo.k8s").map(|v| v.len()), Some(1));
    }

    #[test]
    fn withdrawn_records_answer_as_absent_until_restored() {
        let r = Registry::new("k8s");
        r.add(entry("m1", Some(Role::Master), 10));
        r.withdraw("Masters.demo.k8s.");
        r.withdraw("m1.demo.k8s");
        assert_eq!(r.lookup("masters.demo.k8s."), Some(vec![]));
        assert_eq!(r.lookup("m1.demo.k8s."), None);
        r.restore("masters.demo.k8s");
        r.restore("m1.demo.k8s.");
        assert_eq!(
            r.lookup("masters.demo.k8s"),
            Some(vec![Ipv4Addr::new(10, 77, 0, 10)])
        );
        assert_eq!(r.lookup("m1.demo.k8s").map(|v| v.len()), Some(1));
    }
}
