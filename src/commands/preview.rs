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
use crate::exit;
use crate::input::{Action, Defaults, Item};
use crate::model::{Attribute, Sim, codes};
use crate::output::formula_safe;
use crate::output::results::CsvFile;
use crate::output::row::Verdict;

/// A predicted outcome: verdict, error code, reason.
pub type Prediction = (Verdict, Option<i64>, String);

/// Predicts what the API will do with `action` on `sim` (with its attributes for attribute
/// actions), following the contract's rule order.
pub fn predict(action: &Action, sim: &Sim, attrs: &[Attribute]) -> Prediction {
    let fail = |code: i64, why: &str| (Verdict::Failed, Some(code), why.to_owned());
    let skip = |why: &str| (Verdict::Skipped, Some(codes::ALREADY_DONE), why.to_owned());
    let ok = |why: &str| (Verdict::Ok, None, why.to_owned());
    let suspended = sim.is_suspended();
    let pending = sim.status == "pendingProvision";
    match action {
        Action::SetAttribute { name, value } => match attrs.iter().find(|a| &a.name == name) {
            Some(a) if &a.value == value => (
                Verdict::Skipped,
                None,
                "the attribute already has this value".into(),
            ),
            _ if suspended => fail(
                codes::SUSPENDED,
                "the SIM is suspended; attributes cannot be changed",
            ),
            Some(_) => ok("would update the attribute"),
            None => ok("would create the attribute"),
        },
        Action::DeleteAttribute { name } => match attrs.iter().find(|a| &a.name == name) {
            None => (
                Verdict::Skipped,
                None,
                "the SIM has no attribute with this name".into(),
            ),
            Some(_) if suspended => fail(
                codes::SUSPENDED,
                "the SIM is suspended; attributes cannot be changed",
            ),
            Some(_) => ok("would delete the attribute"),
        },
        _ => {
            if pending {
                return fail(codes::WRONG_STATUS, "the SIM is pendingProvision");
            }
            let changes = match action {
                Action::Activate => sim.status != "active",
                Action::Deactivate => sim.status != "available",
                Action::SetPackage(p) => sim.package_id != *p,
                Action::SetPortfolio(f) => sim.portfolio_id != *f,
                _ => false,
            };
            match action {
                Action::Suspend if sim.customer_suspend => skip("already suspended"),
                Action::Suspend if sim.status != "active" => {
                    fail(codes::WRONG_STATUS, "only an active SIM can be suspended")
                }
                Action::Suspend => ok("would suspend"),
                Action::Unsuspend if !sim.customer_suspend => skip("not suspended by the customer"),
                Action::Unsuspend => {
                    ok("would unsuspend (refused if inside the provider's suspend-settle window)")
                }
                _ if changes && suspended => fail(codes::SUSPENDED, "the SIM is suspended"),
                _ if !changes => skip("already in the requested state"),
                Action::SetPackage(_) if sim.status == "active" => fail(
                    codes::WRONG_STATUS,
                    "the package of an active SIM cannot change",
                ),
                Action::SetPackage(_) | Action::SetPortfolio(_) => {
                    ok("would change it (package and portfolio links are checked by the provider)")
                }
                Action::Activate => ok("would activate"),
                _ => ok("would deactivate"),
            }
        }
    }
}

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
pub async fn preview(
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
        let (item, (verdict, code, reason), status) = joined.map_err(|e| e.to_string())??;
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
            formula_safe(&reason).into_owned(),
            status.unwrap_or_default(),
            humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        ];
        cells.extend(
            layout
                .carried
                .iter()
                .map(|&i| formula_safe(item.fields.get(i).map_or("", String::as_str)).into_owned()),
        );
        csv.write(&cells).map_err(|e| e.to_string())?;
        *counts.entry((action, verdict.as_str())).or_default() += 1;
        if csv.len() > 1 << 20 {
            csv.flush().map_err(|e| e.to_string())?;
        }
    }
    csv.flush().map_err(|e| e.to_string())?;
    csv.sync().map_err(|e| e.to_string())?;
    let mut by: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut text = format!(
        "preview of {} (read-only: {} requests, no change sent)\n",
        input.display(),
        pacer.requests()
    );
    for ((action, verdict), n) in &counts {
        *by.entry(verdict).or_default() += n;
        text += &format!("  {action:<17} would be {verdict:<8} {n}\n");
    }
    text += &format!(
        "  total: ok {}, skipped {}, failed {}, invalid {}\n  preview: {}\n",
        by.get("ok").unwrap_or(&0),
        by.get("skipped").unwrap_or(&0),
        by.get("failed").unwrap_or(&0),
        by.get("invalid").unwrap_or(&0),
        out.display()
    );
    let bad = by.get("failed").unwrap_or(&0) + by.get("invalid").unwrap_or(&0);
    Ok((
        text,
        if bad == 0 {
            exit::OK
        } else {
            exit::ROWS_FAILED
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sim(status: &str, cs: bool, admin: bool, pkg: i64) -> Sim {
        Sim {
            icc_id: "8944500990000012342".into(),
            sim_id: None,
            eid: None,
            status: status.into(),
            customer_suspend: cs,
            admin_suspend: admin,
            system_suspend: false,
            package_id: pkg,
            portfolio_id: "pf".into(),
            mno_id: 1,
            imsi: None,
            msisdn: None,
            modified_date: None,
        }
    }

    #[test]
    fn predictions_follow_the_rules_the_state_decides() {
        let v = |a: &Action, s: &Sim| predict(a, s, &[]).0;
        let c = |a: &Action, s: &Sim| predict(a, s, &[]).1;
        assert_eq!(
            v(&Action::Activate, &sim("active", false, false, 1)),
            Verdict::Skipped
        );
        assert_eq!(
            v(&Action::Activate, &sim("available", false, false, 1)),
            Verdict::Ok
        );
        assert_eq!(
            c(&Action::Deactivate, &sim("active", true, false, 1)),
            Some(16000)
        );
        assert_eq!(
            c(&Action::SetPackage(2), &sim("active", false, false, 1)),
            Some(6046)
        );
        assert_eq!(
            v(&Action::SetPackage(1), &sim("active", false, false, 1)),
            Verdict::Skipped
        );
        assert_eq!(
            c(&Action::Suspend, &sim("available", false, false, 1)),
            Some(6046)
        );
        assert_eq!(
            c(&Action::Activate, &sim("pendingProvision", false, false, 1)),
            Some(6046)
        );
        assert_eq!(
            v(&Action::Unsuspend, &sim("active", true, true, 1)),
            Verdict::Ok
        );
        let a = Attribute {
            icc_attribute_id: 1,
            icc_id: "x".into(),
            name: "n".into(),
            value: "v".into(),
            created_date: None,
            modified_date: None,
        };
        assert_eq!(
            predict(
                &Action::SetAttribute {
                    name: "n".into(),
                    value: "v".into()
                },
                &sim("active", false, false, 1),
                std::slice::from_ref(&a)
            )
            .0,
            Verdict::Skipped
        );
        assert_eq!(
            predict(
                &Action::DeleteAttribute { name: "n".into() },
                &sim("active", true, false, 1),
                &[a]
            )
            .1,
            Some(16000)
        );
    }
}
