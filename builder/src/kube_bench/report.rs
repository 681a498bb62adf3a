//! kube-bench's JSON report (`kube-bench run --json`): one document of
//! `Controls` (one per target: master, etcd, controlplane, policies, node),
//! each with its groups and checks, and the `Totals` over them. Tallied
//! here from the checks themselves and checked against kube-bench's own
//! totals, so a change of the format fails instead of miscounting.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

/// What `kube-bench run --json` prints (check.OverallControls).
#[derive(Debug, Deserialize)]
struct Overall {
    #[serde(rename = "Controls")]
    controls: Vec<Controls>,
    #[serde(rename = "Totals")]
    totals: Totals,
}

/// One target's controls (check.Controls).
#[derive(Debug, Deserialize)]
struct Controls {
    id: String,
    #[serde(default)]
    version: String,
    #[serde(default)]
    text: String,
    node_type: String,
    #[serde(default)]
    tests: Vec<Group>,
    #[serde(flatten)]
    totals: Totals,
}

#[derive(Debug, Deserialize)]
struct Group {
    #[serde(default)]
    results: Vec<Check>,
}

#[derive(Debug, Deserialize)]
struct Check {
    test_number: String,
    #[serde(default)]
    test_desc: String,
    status: String,
    #[serde(default)]
    scored: bool,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    actual_value: String,
    #[serde(default)]
    expected_result: String,
}

/// kube-bench's summary (check.Summary).
#[derive(Debug, Deserialize, PartialEq, Eq)]
struct Totals {
    total_pass: usize,
    total_fail: usize,
    total_warn: usize,
    total_info: usize,
}

/// PASS/FAIL/WARN/INFO counts.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct Counts {
    pub pass: usize,
    pub fail: usize,
    pub warn: usize,
    pub info: usize,
}

impl Counts {
    fn add(&mut self, status: &str) -> Result<()> {
        match status {
            "PASS" => self.pass += 1,
            "FAIL" => self.fail += 1,
            "WARN" => self.warn += 1,
            "INFO" => self.info += 1,
            other => bail!("unknown check status {other:?}"),
        }
        Ok(())
    }

    fn matches(&self, t: &Totals) -> bool {
        (self.pass, self.fail, self.warn, self.info)
            == (t.total_pass, t.total_fail, t.total_warn, t.total_info)
    }
}

/// One failed check: its CIS id, text and why it failed.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Failed {
    pub id: String,
    pub text: String,
    /// Scored (Automated) checks count towards the benchmark's score.
    pub scored: bool,
    pub reason: String,
}

/// One target's section of the report.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Section {
    /// The controls' id ("1" master, "2" etcd, "3" control plane, "4"
    /// worker node, "5" policies).
    pub id: String,
    /// kube-bench's target (node_type): master, etcd, controlplane, node,
    /// policies.
    pub target: String,
    pub text: String,
    pub counts: Counts,
}

/// The tally of one node's report.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Tally {
    /// The benchmark the controls name (e.g. `cis-1.12`).
    pub benchmark: String,
    pub counts: Counts,
    pub sections: Vec<Section>,
    /// Every FAIL, in report order.
    pub failed: Vec<Failed>,
}

/// Longest found value kept in a reason (kube-bench's actual value of a
/// flag check is the component's whole command line).
const FOUND_CHARS: usize = 240;

/// Why a check failed: kube-bench's reason when it gives one (an audit that
/// did not run), else the test it applied (its `expected_result`, e.g.
/// "'--profiling' is present") and what the audit printed.
fn reason(c: &Check) -> String {
    if let Some(r) = c.reason.as_deref().map(str::trim).filter(|r| !r.is_empty()) {
        return one_line(r, FOUND_CHARS);
    }
    let found = one_line(&c.actual_value, FOUND_CHARS);
    let found = if found.is_empty() {
        "nothing (no output: the file or process was not found)".to_string()
    } else {
        found
    };
    format!(
        "test: {}; audit output: {found}",
        one_line(&c.expected_result, 400)
    )
}

/// `s` on one line (whitespace runs collapsed), at most `max` characters.
fn one_line(s: &str, max: usize) -> String {
    let joined = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if joined.chars().count() <= max {
        joined
    } else {
        let mut cut: String = joined.chars().take(max).collect();
        cut.push('…');
        cut
    }
}

/// Parses and tallies one `kube-bench run --json` document.
pub fn parse(json: &str) -> Result<Tally> {
    let overall: Overall = serde_json::from_str(json.trim())
        .context("parsing kube-bench's JSON report (kube-bench run --json)")?;
    if overall.controls.is_empty() {
        bail!("kube-bench's report has no controls: no target ran");
    }
    let mut counts = Counts::default();
    let mut sections = Vec::new();
    let mut failed = Vec::new();
    let mut benchmarks: Vec<&str> = Vec::new();
    for c in &overall.controls {
        let mut section = Counts::default();
        for check in c.tests.iter().flat_map(|g| &g.results) {
            section
                .add(&check.status)
                .with_context(|| format!("check {}", check.test_number))?;
            counts.add(&check.status)?;
            if check.status == "FAIL" {
                failed.push(Failed {
                    id: check.test_number.clone(),
                    text: check.test_desc.trim().to_string(),
                    scored: check.scored,
                    reason: reason(check),
                });
            }
        }
        if !section.matches(&c.totals) {
            bail!(
                "kube-bench's {} totals {:?} disagree with its checks {section:?}",
                c.node_type,
                c.totals
            );
        }
        if !c.version.is_empty() && !benchmarks.contains(&c.version.as_str()) {
            benchmarks.push(&c.version);
        }
        sections.push(Section {
            id: c.id.clone(),
            target: c.node_type.clone(),
            text: c.text.clone(),
            counts: section,
        });
    }
    if !counts.matches(&overall.totals) {
        bail!(
            "kube-bench's totals {:?} disagree with its checks {counts:?}",
            overall.totals
        );
    }
    Ok(Tally {
        benchmark: benchmarks.join(","),
        counts,
        sections,
        failed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Part of a real report: kube-bench v0.16.0 `run --targets node
    /// --benchmark cis-1.12 --json` on a kubebake minion (demo cluster),
    /// cut to a few checks of each state with the totals recomputed.
    const MINION: &str = include_str!("testdata/minion-node.json");
    /// Part of a real master report (targets master,etcd,controlplane,
    /// policies), cut the same way.
    const MASTER: &str = include_str!("testdata/master.json");

    #[test]
    fn a_minion_report_is_tallied_by_state_with_every_failure() {
        let t = parse(MINION).expect("parse");
        assert_eq!(t.benchmark, "cis-1.12");
        assert_eq!(t.sections.len(), 1);
        assert_eq!(t.sections[0].target, "node");
        assert_eq!(t.sections[0].counts, t.counts);
        assert_eq!(t.failed.len(), t.counts.fail);
        assert!(t.counts.pass > 0 && t.counts.warn > 0, "{:?}", t.counts);
        for f in &t.failed {
            assert!(f.id.starts_with("4."), "{f:?}");
            assert!(!f.text.is_empty() && !f.reason.is_empty(), "{f:?}");
        }
    }

    #[test]
    fn a_master_report_has_a_section_per_target_summing_to_the_totals() {
        let t = parse(MASTER).expect("parse");
        let targets: Vec<&str> = t.sections.iter().map(|s| s.target.as_str()).collect();
        assert_eq!(targets, ["master", "etcd", "controlplane", "policies"]);
        let mut sum = Counts::default();
        for s in &t.sections {
            sum.pass += s.counts.pass;
            sum.fail += s.counts.fail;
            sum.warn += s.counts.warn;
            sum.info += s.counts.info;
        }
        assert_eq!(sum, t.counts);
        assert_eq!(t.failed.len(), t.counts.fail);
    }

    fn doc(status: &str, reason: Option<&str>, totals: [usize; 4]) -> String {
        let [p, f, w, i] = totals;
        let reason = reason.map_or(String::new(), |r| format!(r#","reason":"{r}""#));
        format!(
            r#"{{"Controls":[{{"id":"4","version":"cis-1.12","text":"Worker Node","node_type":"node",
               "tests":[{{"section":"4.1","results":[{{"test_number":"4.1.1","test_desc":"Ensure x",
               "status":"{status}","scored":true,"actual_value":"permissions=644\n",
               "expected_result":"permissions has permissions 644, expected 600 or more restrictive"{reason}}}]}}],
               "total_pass":{p},"total_fail":{f},"total_warn":{w},"total_info":{i}}}],
               "Totals":{{"total_pass":{p},"total_fail":{f},"total_warn":{w},"total_info":{i}}}}}"#
        )
    }

    #[test]
    fn a_failure_says_what_was_expected_and_found_or_kube_bench_s_reason() {
        let t = parse(&doc("FAIL", None, [0, 1, 0, 0])).expect("parse");
        assert_eq!(
            t.failed[0].reason,
            "test: permissions has permissions 644, expected 600 or more restrictive; audit output: permissions=644"
        );
        let t = parse(&doc(
            "FAIL",
            Some("failed to run: exit status 1"),
            [0, 1, 0, 0],
        ))
        .expect("parse");
        assert_eq!(t.failed[0].reason, "failed to run: exit status 1");
    }

    #[test]
    fn totals_that_disagree_with_the_checks_or_unknown_states_are_errors() {
        let e = parse(&doc("PASS", None, [0, 1, 0, 0])).expect_err("mismatch");
        assert!(format!("{e:#}").contains("disagree"), "{e:#}");
        let e = parse(&doc("SKIPPED", None, [0, 0, 0, 0])).expect_err("state");
        assert!(format!("{e:#}").contains("unknown check status"), "{e:#}");
        assert!(parse("not json").is_err());
        assert!(parse(r#"{"Controls":[],"Totals":{"total_pass":0,"total_fail":0,"total_warn":0,"total_info":0}}"#).is_err());
    }

    #[test]
    fn long_found_values_are_cut_to_one_line() {
        let long = "a ".repeat(500);
        let s = one_line(&long, 10);
        assert_eq!(s.chars().count(), 11);
        assert!(s.ends_with('…'));
        assert_eq!(one_line(" x \n y ", 10), "x y");
    }
}
