//! A row in a preview (`run --preview`): its outcome predicted from the SIM's state,
//! with no write.
//!
//! Guarantees: nothing but reads is ever sent (the plan's list calls, a SIM read when there
//! is no plan, an attribute list for attribute rows whose SIM's attributes are not known
//! yet); a prediction uses the state the SIM's previous rows would leave (their predicted
//! changes applied), so the rows of one SIM are predicted as a run would do them in order;
//! the vocabulary is the results' (`ok`, `skipped`, `failed` with the code the provider
//! would answer); package and portfolio catalogue rules and the suspend-settle window are the
//! provider's to decide, and such rows are predicted `ok` with a note.

use std::sync::Arc;

use crate::input::{Action, Row};
use crate::output::row::{Before, Verdict};

use super::Ctx;
use crate::engine::calls::{Done, Learned};
use crate::engine::plan::{Seen, Source};
use crate::engine::retry::{Attempts, GiveUp};
use crate::engine::rules::{apply, apply_attrs, field_text, predict, sim_status};

/// Predicts one row; fills what the SIM's field holds now (`before`) and the state the
/// row would leave (`after`).
pub(crate) async fn foresee(
    cx: &Ctx<'_>,
    row: &Row,
    seen: Option<Seen>,
    a: &mut Attempts<'_>,
    l: &mut Learned,
) -> Result<Done, GiveUp> {
    let (c, icc) = (cx.client, row.iccid.as_str());
    let mut seen = match seen {
        Some(s) => s,
        None => loop {
            a.begin()?;
            match c.get_sim(icc).await {
                Ok(r) => break Seen::new(r.value, r.sent, Source::Get),
                Err(e) => a.after(e).await?,
            }
        },
    };
    let sim = seen.sim.clone();
    let attribute_row = matches!(
        row.action,
        Action::SetAttribute { .. } | Action::DeleteAttribute { .. }
    );
    if attribute_row && seen.attrs.is_none() {
        let list = loop {
            a.begin()?;
            match c.list_attributes(icc).await {
                Ok(r) => break r.value.data,
                Err(e) => a.after(e).await?,
            }
        };
        seen.attrs = Some(Arc::new(list));
    }
    let attrs = seen.attrs.clone().unwrap_or_default();
    let (verdict, code, reason) = predict(&row.action, &sim, &attrs);
    l.before = match &row.action {
        Action::SetAttribute { name, .. } | Action::DeleteAttribute { name } => Some(
            attrs
                .iter()
                .find(|x| &x.name == name)
                .map_or(Before::Absent, |x| Before::Value(x.value.clone())),
        ),
        action => field_text(action, &sim).map(Before::Value),
    };
    let mut after = seen;
    if verdict == Verdict::Ok {
        if attribute_row {
            after.attrs = Some(Arc::new(apply_attrs(&row.action, &attrs, icc)));
        } else {
            after.sim = Arc::new(apply(&row.action, &sim));
        }
    }
    let status = Some(sim_status(&after.sim));
    l.after = Some(after);
    Ok(predicted(verdict, code, reason.into_owned(), status))
}

fn predicted(
    verdict: Verdict,
    code: Option<i64>,
    reason: String,
    sim_status: Option<String>,
) -> Done {
    Done {
        verdict,
        status: None,
        code,
        message: reason,
        sim_status,
    }
}
