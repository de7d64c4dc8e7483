//! `simbulk report`: reads a results file and prints the morning-after summary, and writes
//! it as one HTML page with `--html`.

use std::path::PathBuf;

use clap::Args;

use super::error::{CliError, Outcome};
use crate::exit;
use crate::report::read;

#[derive(Debug, Args)]
pub(crate) struct ReportArgs {
    /// A results file written by `simbulk run`.
    pub(crate) results: PathBuf,
    /// Also write a self-contained HTML report here.
    #[arg(long)]
    pub(crate) html: Option<PathBuf>,
    /// The job's checkpoint, for its runs, operator and change reference [default: the
    /// one beside the results file, as `simbulk run` names it].
    #[arg(long)]
    pub(crate) checkpoint: Option<PathBuf>,
}

/// `simbulk report`.
pub(crate) fn run(a: &ReportArgs) -> Outcome {
    let rep = read(&a.results, a.checkpoint.as_deref()).map_err(CliError::usage)?;
    crate::output::stdout::print(&rep.to_text());
    if let Some(p) = &a.html {
        let spare: Vec<_> = crate::files::output_place(&a.results, "the results file", true)
            .into_iter()
            .collect();
        let written = crate::files::Replace::prepare(p, "--html", &spare).and_then(|mut r| {
            std::io::Write::write_all(r.file(), rep.to_html().as_bytes())
                .and_then(|()| r.commit())
                .map_err(|source| crate::files::Error::Write {
                    what: "--html".into(),
                    path: p.clone(),
                    source,
                })
        });
        written.map_err(CliError::usage)?;
        crate::output::stdout::print(&format!("  html:       {}\n", p.display()));
    }
    Ok(exit::OK)
}
