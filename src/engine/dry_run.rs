//! `--dry-run`: every row read and validated, counts per action and the invalid rows
//! reported; nothing is sent and nothing is written.

use std::collections::BTreeMap;
use std::path::Path;

use crate::exit;
use crate::input::{self, Defaults};

use super::config::Error;

/// `--dry-run`: validates every row and reports; sends nothing, writes nothing.
pub(crate) fn dry_run(input: &Path, defaults: &Defaults) -> Result<(String, u8), Error> {
    let (_, rows) = input::reader::open(input, defaults)?;
    let mut per_action: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut invalid = Vec::new();
    let mut n_invalid = 0u64;
    let mut total = 0u64;
    let mut rows = rows;
    for item in rows.by_ref() {
        let item = item?;
        total += 1;
        match &item.parsed {
            Ok(r) => *per_action.entry(r.action.kind().name()).or_default() += 1,
            Err(reason) => {
                n_invalid += 1;
                if invalid.len() < 1000 {
                    invalid.push(format!("  line {}: {reason}", item.line));
                }
            }
        }
    }
    let mut out = format!(
        "dry run of {}: {total} rows, {} valid, {n_invalid} invalid\n",
        input.display(),
        total - n_invalid
    );
    for (a, n) in &per_action {
        out += &format!("  {a:<17} {n}\n");
    }
    if rows.blank > 0 {
        out += &format!("  blank rows skipped: {}\n", rows.blank);
    }
    if !invalid.is_empty() {
        out += "invalid rows:\n";
        out += &invalid.join("\n");
        out.push('\n');
        if n_invalid > invalid.len() as u64 {
            out += &format!("  … and {} more\n", n_invalid - invalid.len() as u64);
        }
    }
    out += "nothing was sent.\n";
    Ok((
        out,
        if n_invalid == 0 {
            exit::OK
        } else {
            exit::ROWS_FAILED
        },
    ))
}
