//! Before a job's first row: where its files go and whether they may be written, the
//! checkpoint it resumes (or refuses), the outputs opened, the deadline.
//!
//! Guarantees: no output may be the input or another output — compared by device and inode,
//! so a hard link or a path through a symlinked folder does not slip through — nor a symbolic
//! link, a folder or a FIFO; every output's folder is checked before the first request, and
//! every refusal names the path and the flag to change; the checkpoint read is a regular
//! file of a size the input can justify; the checkpoint header holds absolute paths, so a job
//! resumes from any working directory.

use std::path::{Path, PathBuf};

use fixedbitset::FixedBitSet;

use crate::checkpoint::{self, Bounds, Header, JobIdentity, Journal};
use crate::files::OpenMode;
use crate::files::{self, FileId, Place};
use crate::input::{self, reader::InputFile};
use crate::output::row::Tally;
use crate::output::{FailuresFile, ResultsFile};

use super::config::{Error, JobConfig, ResumeMode};

/// Where the job's files are: the input and each output, for comparisons.
pub(crate) struct Places(Vec<(&'static str, PathBuf, Place)>);

impl Places {
    /// The places but those of `what`, to spare when `what` is prepared.
    pub(crate) fn except(&self, what: &str) -> Vec<Place> {
        self.0
            .iter()
            .filter(|(w, _, _)| *w != what)
            .map(|(_, _, p)| p.clone())
            .collect()
    }
}

/// Checks every output of the job (see the module's guarantees) against the opened input.
pub(crate) fn check_paths(cfg: &JobConfig, input: &InputFile) -> Result<Places, Error> {
    let meta = input
        .file()
        .metadata()
        .map_err(|source| input::FileError::Unreadable {
            path: cfg.input.clone(),
            source,
        })?;
    let mut named = vec![(
        "the input",
        cfg.input.clone(),
        Place::File(FileId::of(&meta)),
    )];
    let lock = checkpoint::lock::lock_path(&cfg.checkpoint);
    let mut outputs = vec![
        ("--results", &cfg.results, true),
        ("--failures", &cfg.failures, true),
        ("--checkpoint", &cfg.checkpoint, false),
        // The lock file lives beside the checkpoint: --checkpoint moves it.
        ("--checkpoint", &lock, false),
    ];
    if let Some(p) = cfg.summary_json.as_ref().filter(|p| !is_stdout(p)) {
        outputs.push(("--summary-json", p, false));
    }
    if let Some(p) = &cfg.metrics_file {
        outputs.push(("--metrics-file", p, false));
    }
    for (what, path, devices) in outputs {
        let place = files::output_place(path, what, devices)?;
        named.push((what, path.clone(), place));
    }
    for (i, (a, pa, x)) in named.iter().enumerate() {
        for (b, _, y) in &named[i + 1..] {
            if *x != Place::Device && x == y {
                return Err(Error::SameFile {
                    a,
                    b,
                    path: pa.clone(),
                });
            }
        }
    }
    Ok(Places(named))
}

/// `-` for a file flag: standard output.
pub(crate) fn is_stdout(p: &Path) -> bool {
    p.as_os_str() == "-"
}

/// Where a run starts.
pub(crate) struct Start {
    pub(crate) done: FixedBitSet,
    pub(crate) in_doubt: FixedBitSet,
    pub(crate) tally: Tally,
    /// Lengths of the results, failures and journal to keep (`None`: a fresh job).
    pub(crate) outputs: Option<(u64, u64, u64)>,
    /// The change reference the job started with (a resume without `--change-ref` keeps it).
    pub(crate) change_ref: Option<String>,
    /// `--restart` of a finished job: its results, failures and checkpoint are kept under
    /// this suffix (a time) before the new run's are opened.
    pub(crate) keep_as: Option<String>,
}

impl Start {
    pub(crate) fn fresh() -> Self {
        Self {
            done: FixedBitSet::new(),
            in_doubt: FixedBitSet::new(),
            tally: Tally::default(),
            outputs: None,
            change_ref: None,
            keep_as: None,
        }
    }
}

/// How the checkpoint binds this run.
pub(crate) enum Bound {
    Run(Start),
    /// The job had finished with this exit code.
    Finished(crate::exit::Code, Tally),
}

/// Reads the checkpoint (if any, and unless `--restart`), refusing one of another job.
/// `lines`: the input's line count, which bounds what the checkpoint may hold.
pub(crate) fn bind_checkpoint(
    cfg: &JobConfig,
    identity: &JobIdentity,
    lines: u64,
) -> Result<Bound, Error> {
    let exists = std::fs::symlink_metadata(&cfg.checkpoint).is_ok();
    let bounds = Bounds::for_input(lines);
    if !exists {
        return Ok(Bound::Run(Start::fresh()));
    }
    if cfg.resume == ResumeMode::Restart {
        // A finished job's outputs are its record: a restart keeps them, renamed.
        let finished =
            checkpoint::replay(&cfg.checkpoint, bounds).is_ok_and(|r| r.finished.is_some());
        let keep_as = finished.then(|| {
            let now = crate::clock::rfc3339(
                std::time::SystemTime::now(),
                crate::clock::Precision::Seconds,
            );
            now.replace([':', '-'], "")
        });
        return Ok(Bound::Run(Start {
            keep_as,
            ..Start::fresh()
        }));
    }
    let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let peek = checkpoint::replay(&cfg.checkpoint, bounds)?;
    if cfg.resume == ResumeMode::Refuse {
        return Err(Error::CheckpointExists {
            checkpoint: cfg.checkpoint.clone(),
            rows: peek.tally.total(),
        });
    }
    let differences = peek.header.job.differences(identity);
    if !differences.is_empty() {
        return Err(Error::OtherJob {
            checkpoint: cfg.checkpoint.clone(),
            differences,
        });
    }
    if files::resolve(&peek.header.results) != files::resolve(&cfg.results)
        || files::resolve(&peek.header.failures) != files::resolve(&cfg.failures)
    {
        return Err(Error::OtherOutputs {
            results: peek.header.results,
            failures: peek.header.failures,
        });
    }
    if peek.results_len.is_some() && !cfg.results.exists() {
        return Err(Error::ResultsMissing {
            results: cfg.results.clone(),
            rows: peek.tally.total(),
        });
    }
    let rep = checkpoint::replay(
        &cfg.checkpoint,
        bounds.with_outputs(size(&cfg.results), size(&cfg.failures)),
    )?;
    if let Some(code) = rep.finished {
        // A code outside the table is a job that finished with failed rows, at worst.
        let code = crate::exit::Code::from_number(code).unwrap_or(crate::exit::ROWS_FAILED);
        return Ok(Bound::Finished(code, rep.tally));
    }
    if rep.dropped_tail {
        tracing::info!("checkpoint: dropped a torn last record; those rows will be done again");
    }
    let in_doubt = rep.in_doubt();
    if in_doubt.count_ones(..) > 0 {
        tracing::info!(
            "checkpoint: {} rows were in flight when the last run ended; each is read before anything is sent again",
            in_doubt.count_ones(..)
        );
    }
    Ok(Bound::Run(match rep.results_len {
        Some(r) => Start {
            done: rep.done,
            in_doubt,
            tally: rep.tally,
            outputs: Some((r, rep.failures_len, rep.good_bytes)),
            change_ref: rep.header.change_ref,
            keep_as: None,
        },
        // The headers never reached the files: nothing else did either.
        None => Start::fresh(),
    }))
}

/// Opens the results, failures and journal: kept to what the checkpoint vouches for on a
/// Renames a finished job's results, failures and checkpoint to `<path>.<suffix>`, and says
/// so: a `--restart` starts afresh without losing the record of the job it replaces.
fn keep_finished(cfg: &JobConfig, suffix: &str) -> std::io::Result<()> {
    for (what, p) in [
        ("results", &cfg.results),
        ("failures", &cfg.failures),
        ("checkpoint", &cfg.checkpoint),
    ] {
        if std::fs::symlink_metadata(p).is_err() {
            continue;
        }
        // A name no earlier keep holds: a rename never replaces a kept record.
        let kept = (1..)
            .map(|n| {
                let mut k = p.as_os_str().to_owned();
                k.push(if n == 1 {
                    format!(".{suffix}")
                } else {
                    format!(".{suffix}-{n}")
                });
                std::path::PathBuf::from(k)
            })
            .find(|k| std::fs::symlink_metadata(k).is_err())
            .unwrap_or_default();
        std::fs::rename(p, &kept)?;
        tracing::info!(
            "--restart of a finished job: its {what} are kept as {}",
            Path::new(&kept).display()
        );
    }
    Ok(())
}

/// resume, new otherwise. Errors name the file and its flag.
pub(crate) fn open_outputs(
    cfg: &JobConfig,
    layout: &input::Layout,
    identity: &JobIdentity,
    start: &Start,
) -> Result<(ResultsFile, FailuresFile, Journal), files::Error> {
    let named = |what: &str, p: &Path| {
        let (what, path) = (what.to_owned(), p.to_owned());
        move |source: std::io::Error| files::Error::Write {
            what: what.clone(),
            path: path.clone(),
            source,
        }
    };
    let change_ref = cfg.change_ref.clone().or_else(|| start.change_ref.clone());
    match start.outputs {
        Some((r, f, j)) => {
            let mut results = ResultsFile::open(&cfg.results, OpenMode::KeepPrefix(r), layout)
                .map_err(named("--results", &cfg.results))?;
            results.set_change_ref(change_ref.as_deref().unwrap_or(""));
            let failures = FailuresFile::open(&cfg.failures, OpenMode::KeepPrefix(f), layout)
                .map_err(named("--failures", &cfg.failures))?;
            let cp = named("--checkpoint", &cfg.checkpoint);
            let mut journal = Journal::resume(&cfg.checkpoint, j).map_err(&cp)?;
            // This run's start, at the lengths the outputs were cut back to.
            journal.start(r, f);
            journal.flush().map_err(cp)?;
            Ok((results, failures, journal))
        }
        None => {
            if let Some(suffix) = &start.keep_as {
                keep_finished(cfg, suffix).map_err(named("--restart", &cfg.results))?;
            }
            let mut results = ResultsFile::open(&cfg.results, OpenMode::Truncate, layout)
                .map_err(named("--results", &cfg.results))?;
            results.set_change_ref(change_ref.as_deref().unwrap_or(""));
            let mut failures = FailuresFile::open(&cfg.failures, OpenMode::Truncate, layout)
                .map_err(named("--failures", &cfg.failures))?;
            let flushed = results
                .file()
                .flush()
                .map_err(named("--results", &cfg.results))
                .and_then(|()| {
                    failures
                        .file()
                        .flush()
                        .map_err(named("--failures", &cfg.failures))
                });
            flushed?;
            let header = Header {
                job: identity.clone(),
                results: files::resolve(&cfg.results),
                failures: files::resolve(&cfg.failures),
                created: crate::clock::now_rfc3339(),
                input: Some(files::resolve(&cfg.input)),
                change_ref: cfg.change_ref.clone(),
                operator: Some(operator()),
                version: Some(env!("CARGO_PKG_VERSION").into()),
                apply_again: cfg.apply_again.clone(),
            };
            let cp = named("--checkpoint", &cfg.checkpoint);
            let mut journal = Journal::create(&cfg.checkpoint, &header).map_err(&cp)?;
            journal.start(results.file().len(), failures.file().len());
            journal.flush().map_err(cp)?;
            Ok((results, failures, journal))
        }
    }
}

/// The OS user running simbulk (`USER`, `LOGNAME`, or the numeric uid).
pub(crate) fn operator() -> String {
    ["USER", "LOGNAME"]
        .iter()
        .filter_map(|k| std::env::var(k).ok())
        .find(|v| !v.is_empty())
        .unwrap_or_else(|| {
            // SAFETY: getuid has no preconditions and cannot fail.
            format!("uid {}", unsafe { libc::getuid() })
        })
}

/// The job's deadline (`--max-duration`, `--until`), logged as a local time; none when it
/// is too far away to matter.
pub(crate) fn deadline(cfg: &JobConfig) -> Option<tokio::time::Instant> {
    let within = cfg.stop_within()?;
    let at = tokio::time::Instant::now().checked_add(within)?;
    let local = std::time::SystemTime::now()
        .checked_add(within)
        .and_then(|t| jiff::Timestamp::try_from(t).ok())
        .map(|t| {
            t.to_zoned(jiff::tz::TimeZone::system())
                .strftime("%Y-%m-%dT%H:%M:%S%.3f%:z (%Z)")
                .to_string()
        })
        .unwrap_or_default();
    tracing::info!(
        "stopping at {local} (in {}); no request starts after that",
        crate::clock::duration_text(within)
    );
    Some(at)
}
