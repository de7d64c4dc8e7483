//! `simbulk undo RESULTS.csv`: writes the job that puts back what a finished job changed,
//! and says what it would restore.
//!
//! Guarantees: the undo job appears whole or not at all (it is written beside its final name
//! and renamed), never over the results file it reads; nothing is sent.

use std::path::{Path, PathBuf};

use clap::Args;

use crate::exit;

#[derive(Debug, Args)]
#[command(
    after_help = "Exit status: 0 when the undo job holds every inverse that can be known \
(rows whose value before is unknown are listed in <job>.undo.unknown.csv and on standard error, \
and left as they are); 1 with --strict when some rows are unknown; 2 when the results file \
cannot be read or the job written."
)]
pub(crate) struct UndoArgs {
    /// A results file written by `simbulk run` (with its `before` column).
    pub(crate) results: PathBuf,
    /// Write the undo job here; `-` for standard output [default: beside the results,
    /// `<job>.undo.csv`].
    #[arg(short, long)]
    pub(crate) output: Option<PathBuf>,
    /// Exit 1 when some changed rows cannot be restored (their value before is unknown),
    /// for scripts that must not go on with a partial undo.
    #[arg(long)]
    pub(crate) strict: bool,
}

/// `<job>.results.csv` → `<job>.undo.csv`.
fn default_output(results: &Path) -> PathBuf {
    let name = results
        .file_name()
        .map_or_else(|| "job".into(), |n| n.to_string_lossy().into_owned());
    let stem = name
        .strip_suffix(".results.csv")
        .or_else(|| name.strip_suffix(".csv"))
        .unwrap_or(&name);
    results
        .parent()
        .unwrap_or(Path::new(""))
        .join(format!("{stem}.undo.csv"))
}

/// The side file beside the undo job: `<job>.undo.csv` → `<job>.undo.unknown.csv`.
fn unknown_file(job: &Path) -> PathBuf {
    let name = job
        .file_name()
        .map_or_else(|| "job".into(), |n| n.to_string_lossy().into_owned());
    let stem = name.strip_suffix(".csv").unwrap_or(&name);
    job.with_file_name(format!("{stem}.unknown.csv"))
}

/// `simbulk undo`: exit 0 when every inverse that can be known is written (1 with
/// `--strict` when some rows are unknown), 2 when the file cannot be read or the job written.
pub(crate) fn run(a: &UndoArgs) -> super::error::Outcome {
    let to_stdout = a.output.as_ref().is_some_and(|o| o.as_os_str() == "-");
    let out = a
        .output
        .clone()
        .filter(|_| !to_stdout)
        .unwrap_or_else(|| default_output(&a.results));
    let side = unknown_file(&out);
    let u = write_files(&a.results, (!to_stdout).then_some(out.as_path()), &side)
        .map_err(super::error::CliError::usage)?;
    let job = if to_stdout {
        "standard output".to_owned()
    } else {
        out.display().to_string()
    };
    let text = u.text(&a.results, &job);
    if to_stdout {
        eprint!("{text}");
    } else {
        crate::output::stdout::print(&text);
        crate::output::stdout::print(&format!(
            "  to restore: simbulk run {} --yes\n",
            crate::output::summary::shell_quote(&job)
        ));
    }
    if let Some(t) = u.unknown_text(&side.display().to_string()) {
        eprint!("{t}");
    }
    Ok(if a.strict && u.unknown > 0 {
        exit::ROWS_FAILED
    } else {
        exit::OK
    })
}

/// The undo job written whole to `out` (standard output when `None`), and the rows it cannot
/// restore to `side` — kept only when there are some (a stale one of an earlier undo is
/// removed) — never over `results`.
fn write_files(
    results: &Path,
    out: Option<&Path>,
    side: &Path,
) -> Result<crate::undo::Undo, crate::undo::UndoError> {
    let spare: Vec<_> = crate::files::output_place(results, "the results file", true)
        .into_iter()
        .collect();
    let mut left = crate::files::Replace::prepare(side, "the undo's unknown rows", &spare)?;
    let u = match out {
        Some(out) => {
            let mut r = crate::files::Replace::prepare(out, "--output", &spare)?;
            let u = crate::undo::undo(
                results,
                &mut std::io::BufWriter::new(r.file()),
                &mut std::io::BufWriter::new(left.file()),
            )?;
            r.commit().map_err(crate::undo::UndoError::Write)?;
            u
        }
        None => {
            let mut w = crate::output::stdout::writer();
            crate::undo::undo(results, &mut w, &mut std::io::BufWriter::new(left.file()))?
        }
    };
    if u.unknown > 0 {
        left.commit().map_err(crate::undo::UndoError::Write)?;
    } else if is_unknown_list(side) {
        let _ = std::fs::remove_file(side);
    }
    Ok(u)
}

/// Whether `path` is a side file an earlier undo wrote (a regular file that opens with its
/// header), and so safe to remove.
fn is_unknown_list(path: &Path) -> bool {
    use std::io::Read;
    let header = crate::undo::UNKNOWN_COLUMNS.join(",");
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return false;
    };
    let mut buf = vec![0; header.len()];
    meta.is_file()
        && std::fs::File::open(path).is_ok_and(|mut f| f.read_exact(&mut buf).is_ok())
        && buf == header.as_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_undo_job_goes_beside_the_results() {
        assert_eq!(
            default_output(Path::new("/d/job.results.csv")),
            PathBuf::from("/d/job.undo.csv")
        );
        assert_eq!(
            default_output(Path::new("r.csv")),
            PathBuf::from("r.undo.csv")
        );
        assert_eq!(
            unknown_file(Path::new("/d/job.undo.csv")),
            PathBuf::from("/d/job.undo.unknown.csv")
        );
    }
}
