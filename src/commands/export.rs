//! `simbulk export`: lists SIMs through `GET /api/v2/sim` with every filter the API has,
//! following every page, paced and retried like any call, into a CSV whose first column is
//! `iccid` — so the file can be handed to `simbulk run --action …` as it is.
//!
//! Guarantees: pages are streamed to the output (memory does not grow with the SIM count;
//! `--with-attributes` spools to a temporary file to learn the attribute names first);
//! the API's keyset pagination means SIMs changing during the export are neither skipped nor
//! repeated; cells are written as the API gave them (like the failures file, the export is
//! input for simbulk, not spreadsheet-guarded).

use std::collections::BTreeSet;
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use tokio_util::sync::CancellationToken;

use super::args::{ConnectionArgs, endpoint};
use super::error::{CliError, Outcome};
use crate::api::Client;
use crate::engine::RetryPolicy;
use crate::engine::provider::{Connect, Provider};
use crate::engine::retry::{GiveUp, with_retries};
use crate::exit;
use crate::model::{Attribute, Sim};

#[derive(Debug, Args)]
pub(crate) struct ExportArgs {
    #[command(flatten)]
    pub(crate) connection: ConnectionArgs,

    /// Write the CSV here [default: stdout].
    #[arg(short, long)]
    pub(crate) output: Option<PathBuf>,

    /// Only these ICCIDs (repeatable; sent 100 per request).
    #[arg(long = "iccid", help_heading = "Filters")]
    pub(crate) iccids: Vec<String>,
    /// Only the ICCIDs listed in this file (one per line, or a CSV with an iccid column).
    #[arg(long, help_heading = "Filters")]
    pub(crate) iccid_file: Option<PathBuf>,
    #[arg(long, help_heading = "Filters")]
    pub(crate) sim_id: Option<String>,
    #[arg(long, help_heading = "Filters")]
    pub(crate) mno_id: Option<i64>,
    #[arg(long, help_heading = "Filters")]
    pub(crate) portfolio_id: Option<String>,
    #[arg(long, help_heading = "Filters")]
    pub(crate) package_id: Option<i64>,
    /// available, pendingProvision, active, …
    #[arg(long, help_heading = "Filters")]
    pub(crate) status: Option<String>,
    #[arg(long, help_heading = "Filters")]
    pub(crate) admin_suspend: Option<bool>,
    #[arg(long, help_heading = "Filters")]
    pub(crate) system_suspend: Option<bool>,
    #[arg(long, help_heading = "Filters")]
    pub(crate) customer_suspend: Option<bool>,

    /// Add one column per attribute name (`attr:NAME`); one more call per SIM.
    #[arg(long)]
    pub(crate) with_attributes: bool,

    /// SIMs per page (1-1000).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub(crate) page_size: u32,
    #[command(flatten)]
    pub(crate) reads: super::args::ReadArgs,
}

/// The export's columns, before any attribute columns.
pub(crate) const COLUMNS: [&str; 13] = [
    "iccid",
    "simId",
    "eid",
    "status",
    "customerSuspend",
    "adminSuspend",
    "systemSuspend",
    "packageId",
    "portfolioId",
    "mnoId",
    "imsi",
    "msisdn",
    "modifiedDate",
];

fn cells(s: &Sim) -> Vec<String> {
    let o = |v: &Option<String>| v.clone().unwrap_or_default();
    // A provider without packages or operators in the model's sense reads them as 0 (the
    // contract's ids are positive): the cell stays empty, so `apply` keeps them as they are.
    let id = |v: i64| if v == 0 { String::new() } else { v.to_string() };
    vec![
        s.icc_id.clone(),
        o(&s.sim_id),
        o(&s.eid),
        s.status.clone(),
        s.customer_suspend.to_string(),
        s.admin_suspend.to_string(),
        s.system_suspend.to_string(),
        id(s.package_id),
        s.portfolio_id.clone(),
        id(s.mno_id),
        o(&s.imsi),
        o(&s.msisdn),
        o(&s.modified_date),
    ]
}

fn filters(a: &ExportArgs) -> Vec<(&'static str, String)> {
    let mut q = Vec::new();
    let mut add = |k: &'static str, v: Option<String>| {
        if let Some(v) = v {
            q.push((k, v));
        }
    };
    add("simId", a.sim_id.clone());
    add("mnoId", a.mno_id.map(|v| v.to_string()));
    add("portfolioId", a.portfolio_id.clone());
    add("packageId", a.package_id.map(|v| v.to_string()));
    add("status", a.status.clone());
    add("adminSuspend", a.admin_suspend.map(|v| v.to_string()));
    add("systemSuspend", a.system_suspend.map(|v| v.to_string()));
    add("customerSuspend", a.customer_suspend.map(|v| v.to_string()));
    q
}

fn iccid_list(a: &ExportArgs) -> Result<Vec<String>, String> {
    let mut v = a.iccids.clone();
    if let Some(p) = &a.iccid_file {
        let (layout, rows) = crate::input::reader::open(
            p,
            None,
            &crate::input::Defaults {
                action: Some("activate".into()),
                ..Default::default()
            },
        )
        .map_err(|e| e.to_string())?;
        for item in rows {
            let item = item.map_err(|e| e.to_string())?;
            let cell = item.cell(Some(layout.iccid));
            if !cell.is_empty() {
                v.push(cell.to_owned());
            }
        }
    }
    Ok(v)
}

/// Why an export ended early.
enum Failure {
    /// An error.
    Error(CliError),
    /// The reader of standard output went away (`| head`): a quiet end.
    ReaderGone,
}

fn usage(e: impl std::fmt::Display) -> Failure {
    Failure::Error(CliError::usage(e))
}

fn halted(e: impl std::fmt::Display) -> Failure {
    Failure::Error(CliError::halted(e))
}

/// A write to the export's output failed.
fn write_failed(e: std::io::Error) -> Failure {
    if crate::output::stdout::is_closed_pipe(&e) {
        Failure::ReaderGone
    } else {
        halted(format!("cannot write the export: {e}"))
    }
}

fn csv_failed(e: csv::Error) -> Failure {
    match e.into_kind() {
        csv::ErrorKind::Io(e) => write_failed(e),
        other => halted(format!("cannot write the export: {other:?}")),
    }
}

/// Statuses the contract lists (`x-known-values`); the API may use others.
const KNOWN_STATUSES: [&str; 3] = ["available", "pendingProvision", "active"];

/// A warning for a `--status` the contract does not list (a typo exports 0 SIMs).
fn status_warning(status: &str) -> Option<String> {
    if KNOWN_STATUSES.contains(&status) {
        return None;
    }
    let closest = KNOWN_STATUSES
        .iter()
        .min_by_key(|k| strsim::levenshtein(&k.to_lowercase(), &status.to_lowercase()))
        .filter(|k| strsim::levenshtein(&k.to_lowercase(), &status.to_lowercase()) <= 3);
    let hint = closest.map_or_else(String::new, |k| format!(" Did you mean {k:?}?"));
    Some(format!(
        "--status {status:?} is not a status the API is known to use ({}); values are case-sensitive.{hint} Exporting with it anyway.",
        KNOWN_STATUSES.join(", ")
    ))
}

/// Where the export is: pages and SIMs read so far (for the message of a failure).
#[derive(Debug, Default)]
struct Read {
    pages: u64,
    sims: u64,
}

/// One page of a query: its SIMs and the token of the next page.
async fn page(
    client: &Client,
    base: &[(&'static str, String)],
    page_size: u32,
    token: Option<&str>,
    policy: &RetryPolicy,
    read: &mut Read,
) -> Result<(Vec<Sim>, Option<String>), Failure> {
    let mut q: Vec<(&str, String)> = base.to_vec();
    q.push(("pageSize", page_size.to_string()));
    if let Some(t) = token {
        q.push(("pageToken", t.to_owned()));
    }
    let tries = std::cell::Cell::new(0u32);
    let r = with_retries(policy, client.stop_token(), &client.pacer, || {
        tries.set(tries.get() + 1);
        client.list_sims(&q)
    })
    .await
    .map_err(|g| match g {
        GiveUp::Error(e) | GiveUp::Halting(e) => halted(format!(
            "listing SIMs failed: gave up on page {} after {} attempts ({} pages, {} SIMs read before it): {e}",
            read.pages + 1,
            tries.get(),
            read.pages,
            read.sims
        )),
        GiveUp::Interrupted => halted("interrupted"),
    })?;
    read.pages += 1;
    read.sims += r.value.data.len() as u64;
    Ok((
        r.value.data,
        r.value.next_page_token.filter(|t| !t.is_empty()),
    ))
}

/// `simbulk export`.
pub(crate) async fn run(a: ExportArgs) -> Outcome {
    let to_stdout = a.output.is_none();
    if let Some(w) = a.status.as_deref().and_then(status_warning) {
        tracing::warn!("{w}");
    }
    let filtered = !filters(&a).is_empty() || !a.iccids.is_empty() || a.iccid_file.is_some();
    match export(a).await {
        Ok(0) if filtered => {
            eprintln!(
                "exported 0 SIMs: no SIM matches the filters; check their values (they are case-sensitive), or run simbulk export without filters to see every SIM"
            );
            Ok(exit::OK)
        }
        Ok(n) => {
            eprintln!("exported {n} SIMs");
            Ok(exit::OK)
        }
        Err(Failure::ReaderGone) => Ok(exit::OK),
        // Stopped because the reader of the CSV went away (`| head`): a quiet end.
        Err(_) if to_stdout && crate::output::stdout::closed() => Ok(exit::OK),
        Err(Failure::Error(e)) => {
            let what = if to_stdout {
                "the CSV on standard output is NOT complete; do not run it"
            } else {
                "no output file was written (an export appears whole or not at all)"
            };
            Err(e.noting(what))
        }
    }
}

/// Where the export goes: standard output, or a file that appears whole when the export is
/// complete (a failed export leaves no file that looks complete).
enum Sink {
    Stdout,
    File(crate::files::Replace),
}

impl Sink {
    fn open(a: &ExportArgs) -> Result<Self, Failure> {
        let Some(p) = &a.output else {
            return Ok(Sink::Stdout);
        };
        let spare: Vec<crate::files::Place> = a
            .iccid_file
            .iter()
            .filter_map(|f| crate::files::output_place(f, "--iccid-file", true).ok())
            .collect();
        crate::files::Replace::prepare(p, "--output", &spare)
            .map(Sink::File)
            .map_err(usage)
    }

    fn writer(&mut self) -> Box<dyn Write + '_> {
        match self {
            Sink::Stdout => Box::new(crate::output::stdout::writer()),
            Sink::File(r) => Box::new(r.file()),
        }
    }

    fn commit(self) -> Result<(), Failure> {
        match self {
            Sink::Stdout => Ok(()),
            Sink::File(r) => r.commit().map_err(write_failed),
        }
    }
}

async fn export(a: ExportArgs) -> Result<u64, Failure> {
    let endpoint = endpoint(&a.connection, a.reads.timeout).map_err(usage)?;
    let iccids = iccid_list(&a).map_err(usage)?;
    if let Some(bad) = iccids
        .iter()
        .find(|i| crate::input::Iccid::parse(i).is_err())
    {
        return Err(usage(format!("{bad:?} is not a valid ICCID")));
    }
    let mut sink = Sink::open(&a)?;
    // The export draws from the account's budget like every job of the account.
    let job = a.output.as_ref().map_or_else(
        || format!("export to stdout, pid {}", std::process::id()),
        |o| format!("export {}", crate::files::resolve(o).display()),
    );
    let (drain, abort) = (CancellationToken::new(), CancellationToken::new());
    crate::signal::escalate(drain.clone(), abort);
    if a.output.is_none() {
        crate::output::stdout::stop_when_reader_gone(drain.clone());
    }
    let provider = Provider::connect(
        &endpoint,
        Connect {
            pacing: &a.reads.pacing.pacing(),
            job,
            concurrency: usize::from(a.reads.concurrency),
            retry: RetryPolicy::new(a.reads.max_retries),
            stop: drain,
            deadline: None,
        },
    )
    .await
    .map_err(|e| Failure::Error(e.into()))?;
    let (client, policy) = (&provider.client, provider.retry);
    let base = filters(&a);
    let queries: Vec<Vec<(&'static str, String)>> = if iccids.is_empty() {
        vec![base]
    } else {
        iccids
            .chunks(100)
            .map(|c| {
                let mut q = base.clone();
                q.extend(c.iter().map(|i| ("iccId", i.clone())));
                q
            })
            .collect()
    };
    let n = {
        let mut w = csv::Writer::from_writer(std::io::BufWriter::new(sink.writer()));
        let n = if a.with_attributes {
            with_attributes(&a, client, &policy, &queries, &mut w).await
        } else {
            plain(&a, client, &policy, &queries, &mut w).await
        };
        // Its share goes to the account's other jobs at once, whatever the export's end.
        provider.leave().await;
        let n = n?;
        w.flush().map_err(write_failed)?;
        n
    };
    if crate::output::stdout::closed() {
        return Err(Failure::ReaderGone);
    }
    sink.commit()?;
    Ok(n)
}

type Writer<'a> = csv::Writer<std::io::BufWriter<Box<dyn Write + 'a>>>;

/// Every page of every query, each SIM a row.
async fn plain(
    a: &ExportArgs,
    client: &Client,
    policy: &RetryPolicy,
    queries: &[Vec<(&'static str, String)>],
    w: &mut Writer<'_>,
) -> Result<u64, Failure> {
    w.write_record(COLUMNS).map_err(csv_failed)?;
    let mut n = 0u64;
    let mut read = Read::default();
    for q in queries {
        let mut token: Option<String> = None;
        loop {
            let (sims, next) =
                page(client, q, a.page_size, token.as_deref(), policy, &mut read).await?;
            n += sims.len() as u64;
            for s in &sims {
                w.write_record(cells(s)).map_err(csv_failed)?;
            }
            match next {
                Some(t) => token = Some(t),
                None => break,
            }
        }
    }
    Ok(n)
}

/// Most attribute names (columns) an export takes.
const MAX_ATTRIBUTE_COLUMNS: usize = 1024;

/// Every SIM with its attributes: the attribute names are known only at the end, so the
/// SIMs are spooled to a temporary file first, then written with one column per name.
async fn with_attributes(
    a: &ExportArgs,
    client: &Arc<Client>,
    policy: &RetryPolicy,
    queries: &[Vec<(&'static str, String)>],
    w: &mut Writer<'_>,
) -> Result<u64, Failure> {
    let mut spool = std::io::BufWriter::new(tempfile::NamedTempFile::new().map_err(halted)?);
    let mut names = BTreeSet::new();
    let mut n = 0u64;
    let mut read = Read::default();
    for q in queries {
        let mut token: Option<String> = None;
        loop {
            let (sims, next) =
                page(client, q, a.page_size, token.as_deref(), policy, &mut read).await?;
            n += sims.len() as u64;
            for chunk in sims.chunks(usize::from(a.reads.concurrency)) {
                let lists = futures::future::join_all(chunk.iter().map(|s| {
                    with_retries(policy, client.stop_token(), &client.pacer, move || {
                        client.list_attributes(&s.icc_id)
                    })
                }))
                .await;
                for (sim, list) in chunk.iter().zip(lists) {
                    let attrs: Vec<Attribute> = match list {
                        Ok(r) => r.value.data,
                        Err(GiveUp::Error(e) | GiveUp::Halting(e)) => {
                            return Err(halted(format!(
                                "reading attributes of {} failed: {e}",
                                sim.icc_id
                            )));
                        }
                        Err(GiveUp::Interrupted) => {
                            return Err(halted("interrupted; nothing was written"));
                        }
                    };
                    names.extend(attrs.iter().map(|x| x.name.clone()));
                    if names.len() > MAX_ATTRIBUTE_COLUMNS {
                        return Err(halted(format!(
                            "the SIMs have more than {MAX_ATTRIBUTE_COLUMNS} attribute names; export without --with-attributes"
                        )));
                    }
                    serde_json::to_writer(&mut spool, &(sim, attrs)).map_err(halted)?;
                    spool.write_all(b"\n").map_err(halted)?;
                }
            }
            match next {
                Some(t) => token = Some(t),
                None => break,
            }
        }
    }
    spool.flush().map_err(halted)?;
    let file = spool.into_inner().map_err(|e| halted(e.error()))?;
    write_spooled(&file, &names, w)?;
    Ok(n)
}

/// Writes the spooled SIMs with one column per attribute name.
fn write_spooled(
    file: &tempfile::NamedTempFile,
    names: &BTreeSet<String>,
    w: &mut Writer<'_>,
) -> Result<(), Failure> {
    let header: Vec<String> = COLUMNS
        .iter()
        .map(|c| (*c).to_owned())
        .chain(names.iter().map(|n| format!("attr:{n}")))
        .collect();
    w.write_record(&header).map_err(csv_failed)?;
    let mut reader = std::io::BufReader::new(file.reopen().map_err(halted)?);
    let mut line = String::new();
    while reader.read_line(&mut line).map_err(halted)? > 0 {
        let (sim, attrs): (Sim, Vec<Attribute>) = serde_json::from_str(&line).map_err(halted)?;
        let mut row = cells(&sim);
        row.extend(names.iter().map(|n| {
            attrs
                .iter()
                .find(|x| &x.name == n)
                .map(|x| x.value.clone())
                .unwrap_or_default()
        }));
        w.write_record(&row).map_err(csv_failed)?;
        line.clear();
    }
    Ok(())
}
