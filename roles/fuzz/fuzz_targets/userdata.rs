//! Fuzzes the user-data parser (every form: cloud-config, script, MIME,
//! gzip) and checks that whatever it accepts renders a marker that reads
//! back identically and carries no character unsafe in an EnvironmentFile.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use rolectl::marker;
use rolectl::userdata::{self, Request};

fuzz_target!(|data: &[u8]| {
    let Ok(Request::Assign { role, settings, .. }) = userdata::parse(data) else {
        return;
    };
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
