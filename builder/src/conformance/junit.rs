//! The suite's JUnit report (`junit_01.xml`, written by the e2e framework
//! through Ginkgo's JUnit reporter): what passed, failed and was skipped,
//! and why each failure failed.

use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

#[derive(Debug, Deserialize)]
struct Suites {
    #[serde(rename = "testsuite", default)]
    suites: Vec<Suite>,
}

#[derive(Debug, Deserialize)]
struct Suite {
    #[serde(rename = "testcase", default)]
    cases: Vec<Case>,
}

#[derive(Debug, Deserialize)]
struct Case {
    #[serde(rename = "@name")]
    name: String,
    #[serde(rename = "@status", default)]
    status: Option<String>,
    #[serde(rename = "@time", default)]
    time: Option<f64>,
    #[serde(default)]
    failure: Option<Failure>,
    #[serde(default)]
    error: Option<Failure>,
    #[serde(default)]
    skipped: Option<Skipped>,
}

#[derive(Debug, Deserialize)]
struct Failure {
    #[serde(rename = "@message", default)]
    message: Option<String>,
    #[serde(rename = "$text", default)]
    text: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Skipped {}

/// One failed spec (or suite node) and the first lines of its reason.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Failed {
    pub name: String,
    pub reason: String,
}

/// The report's tally.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Summary {
    pub passed: usize,
    pub failed: usize,
    pub skipped: usize,
    /// Seconds the specs and suite nodes took, summed.
    pub seconds: f64,
    pub failures: Vec<Failed>,
}

/// Ginkgo's suite-level nodes (`[SynchronizedBeforeSuite]`, ...): not
/// specs, but their failure fails the run and is listed.
fn is_suite_node(name: &str) -> bool {
    [
        "[BeforeSuite]",
        "[AfterSuite]",
        "[SynchronizedBeforeSuite]",
        "[SynchronizedAfterSuite]",
        "[ReportBeforeSuite]",
        "[ReportAfterSuite]",
    ]
    .iter()
    .any(|n| name.starts_with(n))
}

/// The first lines of a failure message, at most `MAX_REASON` characters.
const MAX_REASON: usize = 400;

fn reason(f: &Failure) -> String {
    let text = f
        .message
        .as_deref()
        .filter(|m| !m.trim().is_empty())
        .or(f.text.as_deref())
        .unwrap_or("(no message)");
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .take(4)
        .collect();
    let mut r = lines.join(" / ");
    if r.chars().count() > MAX_REASON {
        r = r.chars().take(MAX_REASON).collect::<String>() + "…";
    }
    r
}

/// Tallies a JUnit report's text.
pub fn summarize(xml: &str) -> Result<Summary> {
    let suites: Suites = quick_xml::de::from_str(xml).context("not a JUnit report")?;
    if suites.suites.is_empty() {
        anyhow::bail!("not a JUnit report: no <testsuite>");
    }
    let mut s = Summary::default();
    for case in suites.suites.into_iter().flat_map(|x| x.cases) {
        s.seconds += case.time.unwrap_or(0.0);
        let failure = case.failure.as_ref().or(case.error.as_ref());
        let status = case.status.as_deref().unwrap_or("");
        if let Some(f) = failure.filter(|_| status != "skipped") {
            s.failed += 1;
            s.failures.push(Failed {
                name: case.name.clone(),
                reason: reason(f),
            });
        } else if is_suite_node(&case.name) {
            continue;
        } else if case.skipped.is_some() || status == "skipped" || status == "pending" {
            s.skipped += 1;
        } else {
            s.passed += 1;
        }
    }
    s.seconds = (s.seconds * 10.0).round() / 10.0;
    Ok(s)
}

/// Tallies the report file at `path`.
pub fn read(path: &Path) -> Result<Summary> {
    let xml = std::fs::read_to_string(path)
        .with_context(|| format!("reading the JUnit report {}", path.display()))?;
    summarize(&xml).with_context(|| format!("{}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape Ginkgo v2's JUnit reporter writes (trimmed).
    const REPORT: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<testsuites tests="5" disabled="1" errors="0" failures="2" time="61.5">
  <testsuite name="Kubernetes e2e suite" package="/e2e" tests="5" disabled="1" skipped="1" errors="0" failures="2" time="61.5" timestamp="2026-12-07T12:00:00">
    <properties><property name="SuiteSucceeded" value="false"></property></properties>
    <testcase name="[SynchronizedBeforeSuite]" classname="Kubernetes e2e suite" status="passed" time="3.5"></testcase>
    <testcase name="[sig-network] DNS should provide DNS for services  [Conformance]" classname="Kubernetes e2e suite" status="passed" time="20.25">
      <system-err>STEP: Creating a test headless service</system-err>
    </testcase>
    <testcase name="[sig-node] PreStop should call prestop when killing a pod  [Conformance]" classname="Kubernetes e2e suite" status="failed" time="30">
      <failure message="[FAILED] validating pre-stop.&#xA;Unexpected error:&#xA;    timed out waiting for the condition" type="failed">[FAILED] validating pre-stop.
Unexpected error: timed out</failure>
      <system-err>...</system-err>
    </testcase>
    <testcase name="[sig-apps] Deployment should run the lifecycle of a Deployment [Serial] [Conformance]" classname="Kubernetes e2e suite" status="skipped" time="0">
      <skipped message="skipped"></skipped>
    </testcase>
    <testcase name="[ReportAfterSuite] Kubernetes e2e suite report" classname="Kubernetes e2e suite" status="failed" time="7.75">
      <failure message="" type="failed">could not write the report</failure>
    </testcase>
  </testsuite>
</testsuites>"#;

    #[test]
    fn tallies_specs_and_explains_failures() {
        let s = summarize(REPORT).expect("report");
        assert_eq!((s.passed, s.failed, s.skipped), (1, 2, 1));
        assert_eq!(s.seconds, 61.5);
        assert_eq!(
            s.failures[0].name,
            "[sig-node] PreStop should call prestop when killing a pod  [Conformance]"
        );
        assert_eq!(
            s.failures[0].reason,
            "[FAILED] validating pre-stop. / Unexpected error: / timed out waiting for the condition"
        );
        // A failed suite node counts and says why (its message is empty:
        // the element's text).
        assert_eq!(s.failures[1].reason, "could not write the report");
    }

    #[test]
    fn a_file_that_is_not_a_report_says_so() {
        let e = summarize("<html>oops</html>").expect_err("not a report");
        assert!(format!("{e:#}").contains("not a JUnit report"), "{e:#}");
    }
}
