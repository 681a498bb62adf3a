//! Fuzzes the image definition parser and validator
//! (`kubebake_definition::definition::parse_str`, re-exported as
//! `kubebake::definition`) with the repository root as data root, so
//! definitions may name the real unit and drop-in templates and the recipes
//! in `images/recipes/`.
//!
//! Beyond "no panic" it checks that a rejected definition carries at least
//! one field error, each naming the file, a field path and a message, and
//! that an accepted one keeps the validator's promises: every image path
//! re-validates, the Kubernetes version and digests print in a form that
//! parses back identically, unit names are unique, the downloads list every
//! artifact and source, and parsing the same text again gives the same
//! definition.
#![no_main]

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use kubebake_definition::definition::{self, Definition, ImagePath, KubernetesVersion, LoadOptions};
use kubebake_definition::digest::Digest;
use libfuzzer_sys::fuzz_target;

fn source() -> PathBuf {
    // <repo>/images/fuzz.yaml: the definition's directory is images/ (for
    // recipes and patches), its data root the repository root.
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../images/fuzz.yaml")
}

fn parse(text: &str, source: &Path) -> Result<Definition, definition::DefinitionError> {
    definition::parse_str(text, source, &LoadOptions::default())
}

fn check_path(p: &ImagePath) {
    assert_eq!(
        ImagePath::new(p.as_str()).as_ref(),
        Ok(p),
        "accepted image path does not re-validate"
    );
}

fn check_digest(d: &Digest) {
    let shown = d.to_string();
    let back: Digest = shown.parse().expect("digest prints in a form that parses");
    assert!(back == *d, "digest round-trip: {shown}");
}

fn check_accepted(text: &str, source: &Path, def: &Definition) {
    assert!(!def.name.is_empty(), "empty name accepted");
    if let Some(v) = def.kubernetes_version {
        assert_eq!(KubernetesVersion::parse(&v.to_string()), Ok(v));
    }
    for a in &def.artifacts {
        for p in a.install.paths() {
            check_path(p);
        }
        check_digest(&a.digest);
    }
    for f in &def.files {
        check_path(&f.path);
    }
    for l in &def.links {
        check_path(&l.path);
    }
    for b in &def.builds {
        for o in &b.outputs {
            if let Some((p, _)) = &o.install {
                check_path(p);
            }
        }
        for s in b.sources() {
            check_digest(&s.digest);
        }
    }
    for c in &def.container_images {
        check_path(&c.archive_path());
    }
    let mut names = HashSet::new();
    for u in &def.units {
        assert!(
            names.insert(&u.name),
            "duplicate unit {:?} accepted",
            u.name
        );
    }
    let sources: usize = def.builds.iter().map(|b| b.sources().len()).sum();
    assert_eq!(def.downloads().len(), def.artifacts.len() + sources);

    // Deterministic: the same text gives the same definition.
    let again = parse(text, source).expect("accepted once, rejected the second time");
    assert_eq!(
        serde_json::to_string(def).expect("serialize"),
        serde_json::to_string(&again).expect("serialize"),
        "parsing the same text twice gave different definitions"
    );
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let source = source();
    match parse(text, &source) {
        Ok(def) => check_accepted(text, &source, &def),
        Err(e) => {
            let errors = e.field_errors();
            assert!(!errors.is_empty(), "rejected without a field error");
            for fe in &errors {
                assert_eq!(fe.file, source, "error names another file: {fe}");
                assert!(!fe.field.is_empty(), "error without a field path: {fe}");
                assert!(
                    !fe.message.trim().is_empty(),
                    "error without a message: {fe}"
                );
            }
            let shown = e.to_string();
            assert!(
                shown.contains(&format!("({} error", errors.len())),
                "error count not shown: {shown}"
            );
        }
    }
});
