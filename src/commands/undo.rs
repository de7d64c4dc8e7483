//! `simbulk undo RESULTS.csv`: writes the job that puts back what a finished job changed,
//! and says what it would restore.
//!
//! Guarantees: the undo job appears whole or not at all (it is written beside its final name
//! and renamed), never over the results file it reads; nothing is sent.

use std::path::{Path, PathBuf};

use clap::Args;

use crate::exit;

#[derive(Debug, Args)]
pub(crate) struct UndoArgs {
    /// A results file written by `simbulk run` (with its `before` column).
    pub(crate) results: PathBuf,
    /// Write the undo job here; `-` for standard output [default: beside the results,
    /// `<job>.undo.csv`].
    #[arg(short, long)]
    pub(crate) output: Option<PathBuf>,
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

/// `simbulk undo`: exit 0 when every change can be put back, 1 when some cannot, 2 when the
/// file cannot be read or the job written.
pub(crate) fn run(a: &UndoArgs) -> u8 {
    let out = a
        .output
        .clone()
        .unwrap_or_else(|| default_output(&a.results));
    let done = if out.as_os_str() == "-" {
        let mut w = crate::output::stdout::writer();
        crate::undo::undo(&a.results, &mut w)
            .inspect(|u| eprint!("{}", u.text(&a.results, "standard output")))
    } else {
        write_file(&a.results, &out).inspect(|u| {
            let job = out.display().to_string();
            crate::output::stdout::print(&u.text(&a.results, &job));
            crate::output::stdout::print(&format!(
                "  to restore: simbulk run {} --yes\n",
                crate::output::summary::shell_quote(&job)
            ));
        })
    };
    match done {
        Ok(u) if u.unknown > 0 => exit::ROWS_FAILED,
        Ok(_) => exit::OK,
        Err(e) => {
            super::fatal(e);
            exit::USAGE
        }
    }
}

/// The undo job written whole to `out`, never over `results`.
fn write_file(results: &Path, out: &Path) -> Result<crate::undo::Undo, crate::undo::UndoError> {
    let spare: Vec<_> = crate::files::output_place(results, "the results file", true)
        .into_iter()
        .collect();
    let mut r = crate::files::Replace::prepare(out, "--output", &spare)?;
    let u = crate::undo::undo(results, &mut std::io::BufWriter::new(r.file()))?;
    r.commit().map_err(crate::undo::UndoError::Write)?;
    Ok(u)
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
    }
}
