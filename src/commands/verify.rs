//! `simbulk verify RESULTS`: reads every SIM a job touched and names each that is no longer
//! as the job left it (text, `--json`, an HTML page); `run --verify` does the same at the
//! end of a job.
//!
//! Guarantees: nothing is written to the provider; exit 0 when every SIM is as the job left
//! it, 1 when some differ, 2 for a file that cannot be read, 3 when the provider cannot be
//! read, 75 when stopped; the HTML page appears whole or not at all and every cell in it is
//! escaped.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::Args;
use tokio_util::sync::CancellationToken;

use super::args::{ConnectionArgs, endpoint};
use super::error::{CliError, Outcome};
use crate::api::Endpoint;
use crate::engine::provider::{Connect, Pacing, Provider};
use crate::exit;
use crate::verify::{Difference, Reading, Verified, verify};

#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    /// A results file of `simbulk run` (or of `apply`, or of an undo's run).
    pub(crate) results: PathBuf,

    #[command(flatten)]
    pub(crate) connection: ConnectionArgs,

    #[command(flatten)]
    pub(crate) output: VerifyOutput,

    #[command(flatten)]
    pub(crate) reads: super::args::ReadArgs,
}

/// Where a verification's findings go besides the text on standard output.
#[derive(Debug, Clone, Default, Args)]
pub(crate) struct VerifyOutput {
    /// Print the findings as one JSON document instead of text.
    #[arg(long)]
    pub(crate) json: bool,
    /// Also write the findings as an HTML page here.
    #[arg(long, value_name = "PATH")]
    pub(crate) html: Option<PathBuf>,
}

/// Differences the JSON document and the HTML page list at most (the text lists every one).
const MAX_LISTED: usize = 10_000;

/// How verify reaches the provider: the endpoint, its pacing (the account's budget with
/// it), the name of its lease, reads at once, retries.
pub(crate) struct Reads<'a> {
    pub(crate) endpoint: &'a Endpoint,
    pub(crate) pacing: Pacing,
    pub(crate) job: String,
    pub(crate) concurrency: usize,
    pub(crate) max_retries: u32,
}

/// `simbulk verify`.
pub(crate) async fn run(a: VerifyArgs) -> Outcome {
    let endpoint = endpoint(&a.connection, a.reads.timeout)?;
    let reads = Reads {
        endpoint: &endpoint,
        pacing: a.reads.pacing.pacing(),
        job: format!("verify {}", crate::files::resolve(&a.results).display()),
        concurrency: usize::from(a.reads.concurrency),
        max_retries: a.reads.max_retries,
    };
    let (drain, abort) = (CancellationToken::new(), CancellationToken::new());
    crate::signal::escalate(drain.clone(), abort);
    check(&a.results, &reads, &a.output, &drain).await
}

/// `run --verify`: the job's results verified with the job's endpoint and pacing.
pub(crate) async fn after_job(
    results: &Path,
    reads: &Reads<'_>,
    drain: &CancellationToken,
) -> Outcome {
    check(results, reads, &VerifyOutput::default(), drain).await
}

/// Verifies the results at `results` and prints what it found; the exit code.
pub(crate) async fn check(
    results: &Path,
    reads: &Reads<'_>,
    out: &VerifyOutput,
    drain: &CancellationToken,
) -> Outcome {
    let v = checked(results, reads, out, drain).await?;
    Ok(if v.differ == 0 {
        exit::OK
    } else {
        exit::ROWS_FAILED
    })
}

async fn checked(
    results: &Path,
    reads: &Reads<'_>,
    out: &VerifyOutput,
    drain: &CancellationToken,
) -> Result<Verified, CliError> {
    let mut page = match &out.html {
        Some(p) => {
            let spare: Vec<_> = crate::files::output_place(results, "the results file", true)
                .into_iter()
                .collect();
            Some(crate::files::Replace::prepare(p, "--html", &spare).map_err(CliError::usage)?)
        }
        None => None,
    };
    let provider = Provider::connect(
        reads.endpoint,
        Connect {
            pacing: &reads.pacing,
            job: reads.job.clone(),
            concurrency: reads.concurrency,
            retry: crate::engine::RetryPolicy::new(reads.max_retries),
            stop: drain.clone(),
            deadline: None,
        },
    )
    .await?;
    let reading = Reading {
        client: &provider.client,
        policy: &provider.retry,
        stop: drain,
        concurrency: reads.concurrency,
    };
    let mut f = Findings {
        json: out.json,
        text: crate::output::stdout::writer(),
        listed: Vec::new(),
        html: page.as_ref().map(|_| Vec::new()),
        count: 0,
    };
    let v = verify(results, &reading, &mut |d| f.add(d)).await;
    provider.leave().await;
    let v = v?;
    let words = summary(results, &v);
    let html = f.finish(results, &v, &words);
    if let (Some(mut p), Some(html)) = (page.take(), html) {
        let doc = page_html(results, &words, &html);
        let written = p.file().write_all(doc.as_bytes()).and_then(|()| p.commit());
        written.map_err(|e| CliError::halted(format_args!("cannot write the HTML page: {e}")))?;
    }
    Ok(v)
}

/// Where differences go as they are found: text lines on standard output, or the JSON
/// document's list; the HTML page's rows (both lists bounded by [`MAX_LISTED`]).
struct Findings<W: Write> {
    json: bool,
    text: W,
    listed: Vec<serde_json::Value>,
    html: Option<Vec<maud::Markup>>,
    count: usize,
}

impl<W: Write> Findings<W> {
    fn add(&mut self, d: &Difference) {
        if !self.json {
            let _ = writeln!(
                self.text,
                "  {} {}: the job left {}, now {} (line {})",
                d.iccid, d.field, d.left, d.now, d.line
            );
        } else if self.listed.len() < MAX_LISTED {
            self.listed
                .push(serde_json::to_value(d).unwrap_or_default());
        }
        if let Some(h) = self.html.as_mut().filter(|_| self.count < MAX_LISTED) {
            h.push(row(d));
        }
        self.count += 1;
    }

    /// Prints the verdict (or the JSON document); the HTML page's rows.
    fn finish(self, results: &Path, v: &Verified, words: &str) -> Option<Vec<maud::Markup>> {
        drop(self.text);
        if self.json {
            let doc = serde_json::json!({
                "results": results,
                "sims": v.sims,
                "differ": v.differ,
                "differences_listed": self.listed.len(),
                "differences_total": v.differences,
                "differences": self.listed,
                "requests": v.requests,
            });
            crate::output::stdout::print(&format!("{doc:#}\n"));
        } else {
            crate::output::stdout::print(words);
        }
        self.html
    }
}

/// The verification in one line.
fn summary(results: &Path, v: &Verified) -> String {
    let sims = crate::output::summary::thousands(v.sims);
    if v.differ == 0 {
        format!(
            "verify of {}: all {sims} SIMs are as the job left them ({} requests)\n",
            results.display(),
            v.requests
        )
    } else {
        format!(
            "verify of {}: {} of {sims} SIMs differ from what the job left ({} fields; changed by someone else since, or reverted by the provider) ({} requests)\n",
            results.display(),
            crate::output::summary::thousands(v.differ),
            v.differences,
            v.requests
        )
    }
}

fn row(d: &Difference) -> maud::Markup {
    maud::html! {
        tr { td { (d.iccid) } td { (d.field) } td { (d.left) } td { (d.now) } td { (d.line) } }
    }
}

fn page_html(results: &Path, words: &str, rows: &[maud::Markup]) -> String {
    let body = maud::html! {
        h1 { "Verify" }
        section id="verify" {
            p id="verdict" { (words.trim()) }
            table {
                tr { th { "ICCID" } th { "field" } th { "the job left" } th { "now" } th { "results line" } }
                @for r in rows { (r) }
            }
        }
    };
    crate::report::page(&format!("simbulk verify — {}", results.display()), body) + "\n"
}
