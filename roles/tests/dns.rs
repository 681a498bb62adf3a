//! `wait-master` and `weave` against a real authoritative DNS server
//! (hickory-server, zone `k8s.` on 127.0.0.1:<random port>) whose records
//! appear while rolectl waits, and a fake kubectl. rolectl queries the
//! server via `--dns-server`.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use hickory_server::proto::rr::rdata::{A, SOA};
use hickory_server::proto::rr::{LowerName, Name, RData, Record};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneHandler, ZoneType};
use hickory_server::Server;

/// An authoritative server for `k8s.` whose records tests add while
/// rolectl is waiting.
struct Dns {
    addr: SocketAddr,
    zone: Arc<InMemoryZoneHandler>,
    rt: tokio::runtime::Runtime,
    serial: AtomicU32,
}

impl Dns {
    fn start() -> Dns {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let origin = Name::from_str("k8s.").unwrap();
        let mut zone =
            InMemoryZoneHandler::empty(origin.clone(), ZoneType::Primary, AxfrPolicy::Deny);
        let soa = SOA::new(
            Name::from_str("ns.k8s.").unwrap(),
            Name::from_str("admin.k8s.").unwrap(),
            1,
            60,
            60,
            600,
            0,
        );
        assert!(zone.upsert_mut(Record::from_rdata(origin.clone(), 0, RData::SOA(soa)), 1));
        let zone = Arc::new(zone);
        let mut catalog = Catalog::new();
        catalog.upsert(
            LowerName::new(&origin),
            vec![zone.clone() as Arc<dyn ZoneHandler>],
        );
        let addr = rt.block_on(async {
            let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let addr = sock.local_addr().unwrap();
            let mut server = Server::new(catalog);
            server.register_socket(sock);
            tokio::spawn(async move {
                let _ = server.block_until_done().await;
            });
            addr
        });
        Dns {
            addr,
            zone,
            rt,
            serial: AtomicU32::new(2),
        }
    }

    fn add_a(&self, name: &str, ip: &str) {
        let rec = Record::from_rdata(
            Name::from_str(&format!("{name}.")).unwrap(),
            0,
            RData::A(A(ip.parse::<Ipv4Addr>().unwrap())),
        );
        let serial = self.serial.fetch_add(1, Ordering::SeqCst);
        assert!(self.rt.block_on(self.zone.upsert(rec, serial)));
    }

    fn arg(&self) -> String {
        self.addr.to_string()
    }
}

fn minion_root(extra: &str) -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    let ud = format!("#cloud-config\nkubernetes:\n  role: minion\n  cluster: demo\n{extra}");
    put_user_data(t.path(), ud.as_bytes());
    let o = activate(t.path());
    assert!(o.status.success(), "{}", stderr(&o));
    t
}

fn spawn(args: &[&str]) -> Child {
    Command::new(BIN)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn finish(c: Child) -> (Option<i32>, String, String) {
    let o = c.wait_with_output().unwrap();
    (o.status.code(), stdout(&o), stderr(&o))
}

fn resolve_only_args<'a>(root: &'a str, dns: &'a str, timeout: &'a str) -> Vec<&'a str> {
    vec![
        "wait-master",
        "--root",
        root,
        "--resolve-only",
        "--timeout",
        timeout,
        "--max-backoff",
        "0.4",
        "--initial-backoff",
        "0.1",
        "--dns-server",
        dns,
    ]
}

#[test]
fn wait_master_resolve_only_waits_for_late_dns() {
    let dns = Dns::start();
    let t = minion_root("");
    let (root, d) = (root_arg(t.path()), dns.arg());
    let start = Instant::now();
    let child = spawn(&resolve_only_args(&root, &d, "10"));
    thread::sleep(Duration::from_millis(1200));
    dns.add_a("masters.demo.k8s", "127.0.0.1");
    let (code, _, err) = finish(child);
    assert_eq!(code, Some(0), "{err}");
    assert!(start.elapsed() >= Duration::from_millis(1200));
    // The first delay is the initial 0.1 s shortened by the 0-20 % jitter.
    let first = "waiting for master masters.demo.k8s: masters.demo.k8s has no addresses (attempt 1, next in ";
    let delay: f64 = err
        .lines()
        .find_map(|l| l.strip_prefix(first))
        .and_then(|rest| rest.strip_suffix("s)"))
        .and_then(|d| d.parse().ok())
        .unwrap_or_else(|| panic!("no first-attempt line in {err}"));
    assert!((0.08..=0.1).contains(&delay), "first delay {delay}: {err}");
    assert!(
        err.contains("master masters.demo.k8s resolves to 127.0.0.1"),
        "{err}"
    );
    let attempts = err
        .lines()
        .filter(|l| l.starts_with("waiting for master"))
        .count();
    assert!(attempts >= 3, "{attempts} attempts:\n{err}");
    let w = &status_json(t.path())["wait_master"];
    assert_eq!(
        (&w["outcome"], &w["mode"]),
        (&"ready".into(), &"resolve".into()),
        "{w}"
    );
}

#[test]
fn wait_master_resolve_only_uses_master_endpoint_override() {
    let dns = Dns::start();
    let t = minion_root("  master_endpoint: api.demo.k8s:6443\n");
    dns.add_a("api.demo.k8s", "127.0.0.1");
    let (root, d) = (root_arg(t.path()), dns.arg());
    let (code, _, err) = finish(spawn(&resolve_only_args(&root, &d, "5")));
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("master api.demo.k8s resolves to"), "{err}");
}

#[test]
fn wait_master_resolve_only_times_out_with_exit_2() {
    let dns = Dns::start();
    let t = minion_root("");
    let (root, d) = (root_arg(t.path()), dns.arg());
    let start = Instant::now();
    let (code, _, err) = finish(spawn(&resolve_only_args(&root, &d, "1.5")));
    assert_eq!(code, Some(2), "{err}");
    assert!(start.elapsed() < Duration::from_secs(5));
    assert!(
        err.contains("timed out after")
            && err.contains("waiting for master masters.demo.k8s to resolve")
            && err.contains("masters.demo.k8s has no addresses"),
        "{err}"
    );
    assert_eq!(status_json(t.path())["wait_master"]["outcome"], "timeout");
}

#[test]
fn wait_master_config_errors_exit_1() {
    let t = tempfile::tempdir().unwrap();
    let r = root_arg(t.path());
    let o = rolectl(&["wait-master", "--root", &r, "--resolve-only"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("no role marker"), "{}", stderr(&o));
    for (args, want) in [
        (
            &["--resolve-only", "--kubeconfig", "/k"][..],
            "--resolve-only waits for DNS alone; drop --kubeconfig",
        ),
        (
            &["--kubectl", "/k"],
            "--resolve-only, --kubeconfig FILE or --node-kubeconfig FILE is required",
        ),
        // The plain-HTTP health probe is gone: no unit used it.
        (
            &["--health-url", "http://{master}:1/"],
            "wait-master: unknown option --health-url",
        ),
    ] {
        let o = rolectl(&[&["wait-master", "--root", &r], args].concat());
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        assert!(stderr(&o).contains(want), "{args:?}: {}", stderr(&o));
    }
}

fn read_plan(root: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(root.join("run/rolectl/weave.json")).unwrap())
        .unwrap()
}

#[test]
fn weave_waits_for_expected_minions_then_plans_consensus() {
    let dns = Dns::start();
    let t =
        minion_root("  expected_minions: 3\n  weave:\n    password: s3cret-pass\n    mtu: 1400\n");
    dns.add_a("minions.demo.k8s", "10.99.0.2");
    let (root, d) = (root_arg(t.path()), dns.arg());
    let child = spawn(&[
        "weave",
        "--root",
        &root,
        "--dry-run",
        "--poll",
        "0.3",
        "--timeout",
        "10",
        "--dns-server",
        &d,
        "--own-addr",
        "10.99.0.2",
    ]);
    thread::sleep(Duration::from_millis(1000));
    dns.add_a("minions.demo.k8s", "10.99.0.10");
    thread::sleep(Duration::from_millis(700));
    dns.add_a("minions.demo.k8s", "10.99.0.3");
    let (code, out, err) = finish(child);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains("minions.demo.k8s: 1 of 3 addresses, waiting"),
        "{err}"
    );
    assert!(
        err.contains("minions.demo.k8s: 2 of 3 addresses, waiting"),
        "{err}"
    );
    assert_eq!(
        out.trim(),
        "/usr/local/bin/weaver --port=6783 --datapath=datapath --host-root=/ --http-addr=127.0.0.1:6784 --metrics-addr=127.0.0.1:6782 --docker-api= --no-dns --db-prefix=/var/lib/weave/weave-net --conn-limit=200 --ipalloc-range=10.32.0.0/12 --mtu=1400 --ipalloc-init consensus=3 10.99.0.3 10.99.0.10"
    );
    assert!(!out.contains("s3cret") && !err.contains("s3cret"));
    assert!(
        err.contains("rolectl: weave launch with 2 peer(s), ipalloc-init consensus=3 (dry run)"),
        "{err}"
    );
    let plan = read_plan(t.path());
    assert_eq!(plan["consensus"], 3);
    assert_eq!(plan["minions_seen"], 3);
    assert_eq!(plan["dry_run"], true);
    assert_eq!(plan["password_in_env"], true);
    assert_eq!(
        plan["peers"],
        serde_json::json!(["10.99.0.3", "10.99.0.10"])
    );
    assert_eq!(plan["command"][0], "/usr/local/bin/weaver");
    assert_eq!(plan["role"], "minion");
    assert_eq!(plan["ipalloc_init"], "consensus=3");
    assert!(!plan.to_string().contains("s3cret"));
}

/// `rolectl weave` against `dns`, as the host with address `own`, polling
/// every 0.2 s for up to `timeout` seconds; `extra` follows (`--dry-run`,
/// `-- LAUNCH...`).
fn weave_as(
    root: &str,
    dns: &str,
    own: &str,
    timeout: &str,
    extra: &[&str],
) -> (Option<i32>, String, String) {
    let mut args = vec![
        "weave",
        "--root",
        root,
        "--poll",
        "0.2",
        "--timeout",
        timeout,
        "--dns-server",
        dns,
        "--own-addr",
        own,
    ];
    args.extend_from_slice(extra);
    finish(spawn(&args))
}

#[test]
fn weave_execs_launch_command_with_password_in_env() {
    let dns = Dns::start();
    let t = minion_root("  expected_minions: 2\n  weave:\n    password: s3cret-pass\n");
    dns.add_a("minions.demo.k8s", "10.99.0.1");
    dns.add_a("minions.demo.k8s", "10.99.0.5");
    let (root, d) = (root_arg(t.path()), dns.arg());
    let (code, out, err) = weave_as(
        &root,
        &d,
        "10.99.0.5",
        "5",
        &[
            "--",
            "/bin/sh",
            "-c",
            "echo \"pw=$WEAVE_PASSWORD args=$*\"",
            "sh",
        ],
    );
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        out.trim(),
        "pw=s3cret-pass args=--ipalloc-range=10.32.0.0/12 --ipalloc-init consensus=2 10.99.0.1"
    );
    assert_eq!(read_plan(t.path())["dry_run"], false);
}

#[test]
fn weave_on_a_master_joins_as_an_observer_peering_with_every_minion() {
    let dns = Dns::start();
    let t = tempfile::tempdir().unwrap();
    let ud = "#cloud-config\nkubernetes:\n  role: master\n  cluster: demo\n";
    put_user_data(t.path(), ud.as_bytes());
    let o = activate(t.path());
    assert!(o.status.success(), "{}", stderr(&o));
    dns.add_a("minions.demo.k8s", "10.99.0.7");
    dns.add_a("minions.demo.k8s", "10.99.0.5");
    let (root, d) = (root_arg(t.path()), dns.arg());
    let (code, out, err) = weave_as(&root, &d, "10.99.0.2", "5", &["--dry-run"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.trim()
            .ends_with("--ipalloc-range=10.32.0.0/12 --ipalloc-init observer 10.99.0.5 10.99.0.7"),
        "{out}"
    );
    let plan = read_plan(t.path());
    assert_eq!(plan["role"], "master");
    assert_eq!(plan["ipalloc_init"], "observer");
    assert_eq!(plan["consensus"], serde_json::Value::Null);
    assert_eq!(plan["resumed"], false);
}

#[test]
fn weave_with_a_persisted_ring_rejoins_without_waiting_for_the_quorum() {
    let dns = Dns::start();
    let t = minion_root("  expected_minions: 3\n");
    let db = t.path().join("var/lib/weave/weave-netdata.db");
    std::fs::create_dir_all(db.parent().unwrap()).unwrap();
    std::fs::write(&db, b"ring").unwrap();
    // One minion of three is left in DNS (the others are gone).
    dns.add_a("minions.demo.k8s", "10.99.0.2");
    dns.add_a("minions.demo.k8s", "10.99.0.4");
    let (root, d) = (root_arg(t.path()), dns.arg());
    let (code, out, err) = weave_as(&root, &d, "10.99.0.2", "3", &["--dry-run"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains("rejoining without waiting for the minions' quorum"),
        "{err}"
    );
    assert!(
        out.trim().ends_with("--ipalloc-init consensus=3 10.99.0.4"),
        "{out}"
    );
    assert_eq!(read_plan(t.path())["resumed"], true);
}

#[test]
fn weave_times_out_with_exit_2_and_needs_a_count() {
    let dns = Dns::start();
    let t = minion_root("");
    let (root, d) = (root_arg(t.path()), dns.arg());
    let o = rolectl(&["weave", "--root", &root, "--dry-run", "--dns-server", &d]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--expected N"), "{}", stderr(&o));
    dns.add_a("minions.demo.k8s", "10.99.0.1");
    let (code, _, err) = finish(spawn(&[
        "weave",
        "--root",
        &root,
        "--dry-run",
        "--expected",
        "2",
        "--poll",
        "0.2",
        "--timeout",
        "1",
        "--dns-server",
        &d,
    ]));
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("minions.demo.k8s: 1 of 2 addresses, waiting"),
        "{err}"
    );
    assert!(!t.path().join("run/rolectl/weave.json").exists());
}

/// A stand-in for kubectl: answer N of `answers` on the N-th call (the last
/// one repeats), and log its arguments.
struct FakeKubectl {
    dir: tempfile::TempDir,
}

impl FakeKubectl {
    fn new(answers: &[&str]) -> FakeKubectl {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        let mut script =
            format!("#!/bin/sh\necho \"$*\" >>{d}/args\nn=$(wc -l <{d}/args)\ncase $n in\n");
        for (i, a) in answers.iter().enumerate() {
            let pat = if i + 1 == answers.len() {
                "*".to_string()
            } else {
                (i + 1).to_string()
            };
            let body = match *a {
                "ok" => "echo ok; exit 0".to_string(),
                "refused" => "echo 'The connection to the server masters.demo.k8s:6443 was refused - did you specify the right host or port?' >&2; exit 1".to_string(),
                "403" => "echo 'Error from server (Forbidden): forbidden: User \"system:anonymous\" cannot get path \"/readyz\"' >&2; exit 1".to_string(),
                "500" => "echo 'Error from server (InternalError): an error on the server (\"[-]poststarthook/rbac/bootstrap-roles failed: reason withheld\") has prevented the request from succeeding' >&2; exit 1".to_string(),
                "401" => "echo 'error: You must be logged in to the server (Unauthorized)' >&2; exit 1".to_string(),
                other => panic!("{other}"),
            };
            script.push_str(&format!("  {pat}) {body} ;;\n"));
        }
        script.push_str("esac\n");
        let p = dir.path().join("kubectl");
        std::fs::write(&p, script).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        FakeKubectl { dir }
    }
    fn path(&self) -> String {
        self.dir.path().join("kubectl").display().to_string()
    }
    fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("args"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

/// Something listening on `ip`:6443, where wait-master looks before it
/// runs kubectl (each test its own loopback address and DNS server).
fn api_port(ip: &str) -> TcpListener {
    TcpListener::bind((ip, 6443))
        .unwrap_or_else(|e| panic!("binding {ip}:6443 for a stand-in API server: {e}"))
}

fn kubeconfig_args<'a>(
    root: &'a str,
    dns: &'a str,
    kubectl: &'a str,
    extra: &[&'a str],
) -> Vec<&'a str> {
    let mut v = vec![
        "wait-master",
        "--root",
        root,
        "--kubeconfig",
        "/etc/kubernetes/kubelet.conf",
        "--kubeconfig",
        "/etc/kubernetes/bootstrap-kubelet.conf",
        "--kubectl",
        kubectl,
        "--dns-server",
        dns,
    ];
    v.extend_from_slice(extra);
    v
}

#[test]
fn wait_master_kubeconfig_waits_for_dns_then_the_api_server() {
    let dns = Dns::start();
    let t = minion_root("");
    put(t.path(), "/etc/kubernetes/bootstrap-kubelet.conf", b"fake");
    let k = FakeKubectl::new(&["refused", "500", "403", "ok"]);
    let (root, d, kc) = (root_arg(t.path()), dns.arg(), k.path());
    let child = spawn(&kubeconfig_args(
        &root,
        &d,
        &kc,
        // Delays of at most 0.2 s: an attempt falls inside the 0.6 s when
        // the name resolves but nothing listens (with the default 2 s cap and
        // jitter the doubling delays could step over it).
        &[
            "--initial-backoff",
            "0.1",
            "--max-backoff",
            "0.2",
            "--timeout",
            "20",
        ],
    ));
    thread::sleep(Duration::from_millis(600));
    dns.add_a("masters.demo.k8s", "127.0.0.21");
    // Resolves, but nothing listens yet: kubectl is not run.
    thread::sleep(Duration::from_millis(600));
    assert!(k.calls().is_empty(), "kubectl ran before the port was open");
    let _listener = api_port("127.0.0.21");
    let (code, _, err) = finish(child);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains("waiting for DNS: masters.demo.k8s has no addresses (attempt 1, next in "),
        "{err}"
    );
    assert!(
        err.contains("waiting for the API server to listen on masters.demo.k8s:6443: 127.0.0.21:6443: Connection refused"),
        "{err}"
    );
    assert!(err.contains("waiting for the API server (kubeconfig ") && err.contains("bootstrap-kubelet.conf): The connection to the server masters.demo.k8s:6443 was refused"), "{err}");
    assert!(
        err.contains("Error from server (Forbidden)")
            && err.contains("Error from server (InternalError)"),
        "{err}"
    );
    assert!(
        err.contains("the API server at masters.demo.k8s is ready"),
        "{err}"
    );
    let calls = k.calls();
    assert_eq!(calls.len(), 4, "{calls:?}");
    assert!(
        calls[0].ends_with(
            "/etc/kubernetes/bootstrap-kubelet.conf get --raw=/readyz --request-timeout=5s"
        ),
        "{calls:?}"
    );
    let s = status_json(t.path());
    assert_eq!(s["wait_master"]["outcome"], "ready", "{s}");
    // Every failed attempt logged one line; the last one succeeded.
    let failed = err.lines().filter(|l| l.contains("(attempt ")).count();
    assert_eq!(s["wait_master"]["attempts"], failed + 1, "{s}\n{err}");
    assert_eq!(s["outcome"], "activated", "activation record kept: {s}");
}

#[test]
fn wait_master_kubeconfig_prefers_kubelet_conf_and_caps_backoff_at_2s() {
    let dns = Dns::start();
    dns.add_a("masters.demo.k8s", "127.0.0.22");
    let _listener = api_port("127.0.0.22");
    let t = minion_root("");
    put(t.path(), "/etc/kubernetes/bootstrap-kubelet.conf", b"fake");
    put(t.path(), "/etc/kubernetes/kubelet.conf", b"fake");
    let k = FakeKubectl::new(&["refused"]);
    let (root, d, kc) = (root_arg(t.path()), dns.arg(), k.path());
    let (code, _, err) = finish(spawn(&kubeconfig_args(&root, &d, &kc, &["--timeout", "5"])));
    assert_eq!(code, Some(2), "{err}");
    assert!(
        k.calls()
            .iter()
            .all(|c| c.contains("/etc/kubernetes/kubelet.conf ")),
        "{:?}",
        k.calls()
    );
    let delays: Vec<f64> = err
        .lines()
        .filter_map(|l| l.split("next in ").nth(1))
        .map(|x| x.trim_end_matches("s)").parse::<f64>().unwrap())
        .collect();
    assert!(delays.len() >= 4, "{err}");
    assert!(delays.iter().all(|d| *d <= 2.0), "{delays:?}");
    assert!(delays.iter().any(|d| *d >= 1.5), "{delays:?}");
    assert!(err.contains("timed out after"), "{err}");
    assert_eq!(status_json(t.path())["wait_master"]["outcome"], "timeout");
}

#[test]
fn wait_master_kubeconfig_rejected_token_exits_3_at_once() {
    let dns = Dns::start();
    dns.add_a("masters.demo.k8s", "127.0.0.23");
    let _listener = api_port("127.0.0.23");
    let t = minion_root("");
    put(t.path(), "/etc/kubernetes/bootstrap-kubelet.conf", b"fake");
    let k = FakeKubectl::new(&["refused", "401"]);
    let (root, d, kc) = (root_arg(t.path()), dns.arg(), k.path());
    let start = Instant::now();
    let (code, _, err) = finish(spawn(&kubeconfig_args(
        &root,
        &d,
        &kc,
        &["--initial-backoff", "0.1", "--reject-grace", "0"],
    )));
    assert_eq!(code, Some(3), "{err}");
    assert!(start.elapsed() < Duration::from_secs(5));
    assert_eq!(k.calls().len(), 2);
    assert!(err.contains("bootstrap token rejected by the API server: wrong or expired token; give this node fresh user-data"), "{err}");
    let s = status_json(t.path());
    assert_eq!(s["wait_master"]["outcome"], "rejected", "{s}");
    // The refused attempt is the second: "refused" (connection) first.
    assert_eq!(s["wait_master"]["attempts"], 2, "{s}");
    let o = rolectl(&["status", "--root", &root]);
    let out = stdout(&o);
    assert!(out.contains("last wait-master: rejected (bootstrap token rejected by the API server: wrong or expired token; give this node fresh user-data"), "{out}");
    // No kubeconfig at all: a configuration error, exit 1.
    let t = minion_root("");
    let r = root_arg(t.path());
    let (code, _, err) = finish(spawn(&kubeconfig_args(&r, &d, &kc, &[])));
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("none of the kubeconfigs exists"), "{err}");
}

/// A master whose API server is ready before kube-bootstrap created the
/// token Secret refuses the token for a while: within --reject-grace that
/// is "not yet", and the wait goes on until the token is accepted.
#[test]
fn wait_master_kubeconfig_refused_token_within_grace_is_retried() {
    let dns = Dns::start();
    dns.add_a("masters.demo.k8s", "127.0.0.24");
    let _listener = api_port("127.0.0.24");
    let t = minion_root("");
    put(t.path(), "/etc/kubernetes/bootstrap-kubelet.conf", b"fake");
    let k = FakeKubectl::new(&["401", "401", "ok"]);
    let (root, d, kc) = (root_arg(t.path()), dns.arg(), k.path());
    let (code, _, err) = finish(spawn(&kubeconfig_args(
        &root,
        &d,
        &kc,
        &[
            "--initial-backoff",
            "0.1",
            "--reject-grace",
            "30",
            "--timeout",
            "20",
        ],
    )));
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains("the master may not have created the token yet, trying again for"),
        "{err}"
    );
    assert_eq!(k.calls().len(), 3);
    assert_eq!(status_json(t.path())["wait_master"]["outcome"], "ready");
}
