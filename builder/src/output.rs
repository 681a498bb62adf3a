//! What commands print: text or (`--json`) one JSON document on stdout.
//! Writing to a closed pipe (`kubebake ... | head`) is not an error and never
//! a panic: nothing here uses `print!`.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, Result};
use serde::Serialize;
use serde_json::json;

use crate::cli::GlobalArgs;

/// Writes to stdout; a closed pipe is not an error.
pub fn out(text: &str) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e).context("writing to stdout"),
        _ => Ok(()),
    }
}

/// Prints a value as pretty JSON on stdout.
pub fn print_json<T: Serialize>(value: &T) -> Result<()> {
    let mut text = serde_json::to_string_pretty(value).context("serializing JSON output")?;
    text.push('\n');
    out(&text)
}

/// `value` as JSON with `--json`, else `text(value)`.
pub fn emit<T: Serialize>(
    global: &GlobalArgs,
    value: &T,
    text: impl FnOnce(&T) -> String,
) -> Result<()> {
    if global.json {
        print_json(value)
    } else {
        out(&text(value))
    }
}

/// Reports an error at the binary edge: JSON `{ok:false,error}` on stdout
/// with `--json`, `error: ...` on stderr otherwise.
pub fn report_error(global: &GlobalArgs, err: &anyhow::Error) -> ExitCode {
    if global.json {
        let _ = print_json(&json!({ "ok": false, "error": format!("{err:#}") }));
    } else {
        let _ = writeln!(std::io::stderr(), "error: {err:#}");
    }
    ExitCode::FAILURE
}

/// Bytes for people: `303.9 MiB`.
pub fn human_size(n: u64) -> String {
    indicatif::HumanBytes(n).to_string()
}
