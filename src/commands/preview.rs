//! `simbulk run <INPUT> --dry-run --check`: reads each SIM (read-only, paced and retried)
//! and predicts each row's outcome from the rules the SIM's state decides, writing a preview
//! CSV and a summary. No write call is ever sent.
//!
//! What it cannot see: package and portfolio catalogue rules (16005, 16006, 16007, 6026, …)
//! and the suspend-settle window are decided by the provider; such rows are predicted `ok`
//! with a note. Several rows of one SIM are each predicted from the SIM's current state.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::api::{ApiError, Client, Endpoint, Pacer};
use crate::engine::RetryPolicy;
use crate::engine::retry::{GiveUp, with_retries};
use crate::engine::rules::{Prediction, predict};
use crate::exit;
use crate::input::{Action, Defaults, Item};
use crate::model::codes;
use crate::output::formula_safe;
use crate::output::results::CsvFile;
use crate::output::row::Verdict;

/// Columns of the preview file, before carried-through ones.
const COLUMNS: [&str; 10] = [
    "line",
    "iccid",
    "action",
    "value",
    "attribute",
    "prediction",
    "error_code",
    "reason",
    "sim_status",
    "checked_at",
];

async fn check_one(
    client: &Client,
    item: &Item,
    policy: &RetryPolicy,
    stop: &CancellationToken,
) -> (Prediction, Option<String>) {
    let row = match &item.parsed {
        Ok(r) => r,
        Err(reason) => return ((Verdict::Invalid, None, reason.message.clone()), None),
    };
    let icc = row.iccid.as_str();
    let sim = match with_retries(policy, stop, &client.pacer, || client.get_sim(icc)).await {
        Ok(r) => r.value,
        Err(GiveUp::Error(ApiError::Rejected {
            code: Some(codes::NOT_FOUND),
            ..
        })) => {
            return (
                (
                    Verdict::Failed,
                    Some(codes::NOT_FOUND),
                    "no such SIM (or outside your sphere)".into(),
                ),
                None,
            );
        }
        Err(GiveUp::Error(e) | GiveUp::Halting(e)) => {
            return (
                (
                    Verdict::Failed,
                    e.code(),
                    format!("could not read the SIM: {e}"),
                ),
                None,
            );
        }
        Err(GiveUp::Interrupted) => return ((Verdict::Failed, None, "interrupted".into()), None),
    };
    let attrs = if matches!(
        row.action,
        Action::SetAttribute { .. } | Action::DeleteAttribute { .. }
    ) {
        match with_retries(policy, stop, &client.pacer, || client.list_attributes(icc)).await {
            Ok(r) => r.value.data,
            Err(GiveUp::Error(e) | GiveUp::Halting(e)) => {
                return (
                    (
                        Verdict::Failed,
                        e.code(),
                        format!("could not read the attributes: {e}"),
                    ),
                    Some(sim.status),
                );
            }
            Err(GiveUp::Interrupted) => {
                return (
                    (Verdict::Failed, None, "interrupted".into()),
                    Some(sim.status),
                );
            }
        }
    } else {
        Vec::new()
    };
    (predict(&row.action, &sim, &attrs), Some(sim.status.clone()))
}

/// Runs the preview; returns the summary text and the exit code.
pub(crate) async fn preview(
    input: &Path,
    defaults: &Defaults,
    out: &Path,
    endpoint: Endpoint,
    rate: Option<f64>,
    concurrency: usize,
) -> Result<(String, u8), String> {
    let file = crate::input::reader::InputFile::open(input).map_err(|e| e.to_string())?;
    let place =
        crate::files::output_place(out, "the preview file", false).map_err(|e| e.to_string())?;
    let meta = file.file().metadata().map_err(|e| e.to_string())?;
    if place == crate::files::Place::File(crate::files::FileId::of(&meta)) {
        return Err(format!(
            "the preview file {} is the input; rename the input",
            out.display()
        ));
    }
    let (layout, rows) =
        crate::input::reader::rows(file, defaults, None).map_err(|e| e.to_string())?;
    let pacer = Arc::new(Pacer::new(rate, crate::api::pace::default_burst(rate)));
    let client =
        Arc::new(Client::new(endpoint, pacer.clone(), concurrency).map_err(|e| e.to_string())?);
    client.preflight().await.map_err(|e| e.to_string())?;
    let mut csv = CsvFile::open(
        out,
        crate::files::OpenMode::Truncate,
        b',',
        "the preview file",
    )
    .map_err(|e| format!("cannot write {}: {e}", out.display()))?;
    let header: Vec<String> = COLUMNS
        .iter()
        .map(|c| (*c).to_owned())
        .chain(layout.carried_names())
        .collect();
    csv.write(&header).map_err(|e| e.to_string())?;
    let policy = Arc::new(RetryPolicy::new(8));
    let stop = CancellationToken::new();
    let mut counts: BTreeMap<(String, &'static str), u64> = BTreeMap::new();
    let mut stream = futures::stream::iter(rows)
        .map(|item| {
            let (client, policy, stop) = (client.clone(), policy.clone(), stop.clone());
            // Spawned, so reads progress while the writer below is busy.
            tokio::spawn(async move {
                let item = item.map_err(|e| e.to_string())?;
                let (p, status) = check_one(&client, &item, &policy, &stop).await;
                Ok::<_, String>((item, p, status))
            })
        })
        .buffer_unordered(concurrency.max(1));
    while let Some(joined) = stream.next().await {
        let (item, prediction, status) = joined.map_err(|e| e.to_string())??;
        let (action, cells) = row_cells(&layout, &item, &prediction, status);
        csv.write(&cells).map_err(|e| e.to_string())?;
        *counts.entry((action, prediction.0.as_str())).or_default() += 1;
        if csv.len() > 1 << 20 {
            csv.flush().map_err(|e| e.to_string())?;
        }
    }
    csv.flush().map_err(|e| e.to_string())?;
    csv.sync().map_err(|e| e.to_string())?;
    Ok(summary(input, out, pacer.requests(), &counts))
}

/// A preview row's cells (and its action, for the counts).
fn row_cells(
    layout: &crate::input::Layout,
    item: &Item,
    (verdict, code, reason): &Prediction,
    status: Option<String>,
) -> (String, Vec<String>) {
    let (action, value, attribute) = match &item.parsed {
        Ok(r) => (
            r.action.kind().name().to_owned(),
            r.action.value_text(),
            r.action.attribute_text().to_owned(),
        ),
        Err(_) => (
            item.cell(layout.action).to_owned(),
            item.cell(layout.value).to_owned(),
            item.cell(layout.attribute).to_owned(),
        ),
    };
    let mut cells = vec![
        item.line.to_string(),
        formula_safe(item.cell(Some(layout.iccid))).into_owned(),
        formula_safe(&action).into_owned(),
        formula_safe(&value).into_owned(),
        formula_safe(&attribute).into_owned(),
        verdict.as_str().to_owned(),
        code.map(|c| c.to_string()).unwrap_or_default(),
        formula_safe(reason).into_owned(),
        status.unwrap_or_default(),
        crate::clock::now_rfc3339(),
    ];
    cells.extend(
        layout
            .carried
            .iter()
            .map(|&i| formula_safe(item.fields.get(i).map_or("", String::as_str)).into_owned()),
    );
    (action, cells)
}

/// The preview's summary text and exit code.
fn summary(
    input: &Path,
    out: &Path,
    requests: u64,
    counts: &BTreeMap<(String, &'static str), u64>,
) -> (String, u8) {
    let mut by: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut text = format!(
        "preview of {} (read-only: {requests} requests, no change sent)\n",
        input.display()
    );
    for ((action, verdict), n) in counts {
        *by.entry(verdict).or_default() += n;
        text += &format!("  {action:<17} would be {verdict:<8} {n}\n");
    }
    let n = |v| by.get(v).copied().unwrap_or(0);
    text += &format!(
        "  total: ok {}, skipped {}, failed {}, invalid {}\n  preview: {}\n",
        n("ok"),
        n("skipped"),
        n("failed"),
        n("invalid"),
        out.display()
    );
    let code = match n("failed") + n("invalid") {
        0 => exit::OK,
        _ => exit::ROWS_FAILED,
    };
    (text, code)
}
