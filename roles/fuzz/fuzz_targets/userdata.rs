//! Fuzzes the user-data parser (every form: cloud-config, script, MIME,
//! gzip) and checks that whatever it accepts renders a marker that reads
//! back identically and carries no character unsafe in an EnvironmentFile,
//! and that accepted credentials render only their role's files (the
//! schema's list, none empty), each under /etc/kubernetes, with secrets
//! kept out of Debug output.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use rolectl::marker;
use rolectl::userdata::{self, Request};

fuzz_target!(|data: &[u8]| {
    let Ok(Request::Assign {
        role,
        settings,
        credentials,
        ..
    }) = userdata::parse(data)
    else {
        return;
    };
    if let Some(c) = &credentials {
        assert_eq!(c.role(), role, "credentials of the other role");
        assert!(settings.api_server.is_some(), "credentials without API_SERVER");
        let files = c.files(&settings);
        let list = contract::credentials::file_list(role);
        assert_eq!(files.len(), list.len());
        for (f, (_, want)) in files.iter().zip(list) {
            assert!(f.path == want.path && f.mode == want.mode);
            assert!(f.path.starts_with("/etc/kubernetes/") && !f.content.is_empty());
        }
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("PRIVATE KEY-----"), "secret in Debug: {dbg}");
    }
    let text = marker::render(role, &settings);
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (_, value) = line.split_once('=').expect("KEY=value");
        assert!(
            !value.contains(['"', '\'', '\\', '$', '`', '\r', '\n']),
            "unsafe marker value: {line:?}"
        );
    }
    let back = marker::parse(role, Path::new("fuzz"), &text).expect("marker reads back");
    assert_eq!(back.settings.as_ref(), Some(&settings), "marker round-trip");
});
