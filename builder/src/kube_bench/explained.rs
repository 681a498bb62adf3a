//! The kube-bench FAILs kubebake's nodes are known to have, each with why:
//! the one list the README's table, `kubebake kube-bench`'s output and the
//! VM test's check come from. A FAIL not listed here fails the VM test.

/// (CIS check id, why it fails on a kubebake node).
pub const EXPLAINED: &[(&str, &str)] = &[
    (
        "1.1.1",
        "kube-apiserver.service is 0644: systemd ignores a unit file's read restriction (its configuration is readable over D-Bus by anyone) and warns at every boot; the unit holds no secret",
    ),
    (
        "1.1.3",
        "kube-controller-manager.service is 0644, as 1.1.1",
    ),
    (
        "1.1.5",
        "kube-scheduler.service is 0644, as 1.1.1",
    ),
    (
        "1.1.7",
        "etcd.service is 0644, as 1.1.1",
    ),
    (
        "1.2.5",
        "no --kubelet-certificate-authority: kubelets serve with self-signed certificates (no serving-certificate approver yet), so the API server cannot verify them",
    ),
    (
        "1.2.23",
        "no --etcd-certfile/--etcd-keyfile: etcd speaks plain HTTP on the master's loopback (etcd TLS not done yet)",
    ),
    (
        "1.2.26",
        "no --etcd-cafile: etcd speaks plain HTTP on the master's loopback (etcd TLS not done yet)",
    ),
    (
        "1.4.1",
        "profiling is off (enableProfiling: false in kube-scheduler-config.yaml); the check reads only the command line, where --profiling is ignored next to --config",
    ),
    (
        "2.1",
        "etcd has no --cert-file/--key-file: plain HTTP on loopback (etcd TLS not done yet)",
    ),
    (
        "2.2",
        "etcd has no --client-cert-auth: plain HTTP on loopback (etcd TLS not done yet)",
    ),
    (
        "2.4",
        "etcd has no --peer-cert-file/--peer-key-file: one member, no peers yet (etcd TLS not done yet)",
    ),
    (
        "2.5",
        "etcd has no --peer-client-cert-auth: one member, no peers yet (etcd TLS not done yet)",
    ),
    (
        "4.1.1",
        "kubelet.service is 0644, as 1.1.1",
    ),
];

/// Why check `id` fails on a kubebake node, if that is known.
pub fn reason(id: &str) -> Option<&'static str> {
    EXPLAINED.iter().find(|(i, _)| *i == id).map(|(_, r)| *r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_the_readme_explains_each() {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
            .expect("README.md");
        // The README's table: first cell "1.1.1, 1.1.3, …" (CIS ids only).
        let listed: std::collections::BTreeSet<&str> = readme
            .lines()
            .filter_map(|l| l.strip_prefix("| ")?.split_once(" |"))
            .flat_map(|(ids, _)| ids.split(", "))
            .filter(|id| !id.is_empty() && id.chars().all(|c| c.is_ascii_digit() || c == '.'))
            .collect();
        let mut seen = std::collections::BTreeSet::new();
        for (id, why) in EXPLAINED {
            assert!(seen.insert(*id), "{id} twice");
            assert!(!why.is_empty());
            assert!(
                listed.contains(id),
                "README.md's kube-bench table lacks {id}"
            );
        }
        assert_eq!(
            listed, seen,
            "README.md's kube-bench table and EXPLAINED list different checks"
        );
        assert_eq!(reason("2.1"), Some(EXPLAINED[8].1));
        assert_eq!(reason("9.9"), None);
    }
}
