//! One row's calls in a run: the SIM change, or the attribute write, in the fewest calls
//! the contract allows, with reconcile-before-repeat.
//!
//! Guarantees: a SIM action starts from the state the plan saw (or reads the SIM itself when
//! there is no plan) and is skipped without a write when that state already shows what it
//! asks for; a SIM the provider's list did not hold fails `6002` without a write; a row
//! predicted to be refused is still sent (the provider decides its rules) with the
//! prediction noted; `set-attribute` sends the create first and lists only on `16002` or an
//! ambiguous answer, so it never creates twice; after an ambiguous write the SIM or its
//! attributes are read before anything is sent again, and a change found in place is `ok`;
//! every row learns the value its field had before (the results' `before`) and the state it
//! leaves behind (carried to the next row of its SIM).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use crate::api::{ApiError, Client};
use crate::input::Action;
use crate::model::{AttributeCreate, AttributePatch, Sim, codes};
use crate::output::row::{Before, Verdict};

use super::plan::{Seen, Source};
use super::retry::{Attempts, GiveUp};
use super::rules::{field_text, patch_for, predict, satisfied, sim_status};

/// How a row's calls ended.
pub(crate) struct Done {
    pub(crate) verdict: Verdict,
    pub(crate) status: Option<u16>,
    /// An error code with the verdict (a preview's predicted refusal).
    pub(crate) code: Option<i64>,
    pub(crate) message: String,
    pub(crate) sim_status: Option<String>,
}

impl Done {
    pub(crate) fn ok(status: Option<u16>, message: &str, sim: Option<&Sim>) -> Self {
        Self {
            verdict: Verdict::Ok,
            status,
            code: None,
            message: message.into(),
            sim_status: sim.map(sim_status),
        }
    }

    pub(crate) fn skipped(status: Option<u16>, message: &str, sim: Option<&Sim>) -> Self {
        Self {
            verdict: Verdict::Skipped,
            status,
            code: None,
            message: message.into(),
            sim_status: sim.map(sim_status),
        }
    }

    /// The provider answered that the SIM already was as asked (6047): skipped, with its
    /// answer's status and code.
    fn already_done(status: u16, message: &str, sim: &Sim) -> Self {
        Self {
            code: Some(codes::ALREADY_DONE),
            ..Self::skipped(Some(status), message, Some(sim))
        }
    }
}

/// What a row learned of its SIM on the way, whatever its end.
#[derive(Debug, Default)]
pub(crate) struct Learned {
    /// What the row's field held before the change: a value, absent (an attribute that did
    /// not exist), or unknown (a change found in place after a crash or a lost answer);
    /// `None` when the row never learned it.
    pub(crate) before: Option<Before>,
    /// The SIM's state the row leaves behind (`None`: unknown).
    pub(crate) after: Option<Seen>,
    /// What the SIM's state predicted, when it predicted a refusal.
    pub(crate) predicted: Option<String>,
}

pub(crate) const APPLIED_EARLIER: &str =
    "applied (the answer to an earlier attempt was lost; checked before repeating)";

/// How `set-attribute`'s creates have fared in this job: a job that mostly updates names
/// the SIMs already have lists first (2 calls per row, not 3); one that mostly adds new
/// names creates first (1 call per row).
#[derive(Debug, Default)]
pub(crate) struct CreateOdds {
    tried: AtomicU64,
    refused: AtomicU64,
}

impl CreateOdds {
    /// Creates tried before the odds are trusted.
    const WARM_UP: u64 = 32;

    /// Whether to list first: more than half of the creates tried met an existing name.
    fn list_first(&self) -> bool {
        let tried = self.tried.load(Ordering::Relaxed);
        tried >= Self::WARM_UP && self.refused.load(Ordering::Relaxed) * 2 > tried
    }

    fn record(&self, refused: bool) {
        self.tried.fetch_add(1, Ordering::Relaxed);
        if refused {
            self.refused.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Conflicts (attribute created or removed underneath) tolerated before giving up.
const MAX_CONFLICTS: u32 = 5;

/// The SIM's state to start from: what the plan saw, or a read of its own (whose 404 alone
/// says the SIM is unknown).
async fn starting_state(
    c: &Client,
    icc: &str,
    seen: Option<Seen>,
    a: &mut Attempts<'_>,
) -> Result<Seen, GiveUp> {
    if let Some(s) = seen {
        return Ok(s);
    }
    loop {
        a.begin()?;
        match c.get_sim(icc).await {
            Ok(r) => return Ok(Seen::new(r.value, r.sent, Source::Get)),
            Err(e) => a.after(e).await?,
        }
    }
}

/// A SIM action: skipped when the state shows it done, else PATCHed.
pub(crate) async fn sim_change(
    c: &Client,
    icc: &str,
    action: &Action,
    seen: Option<Seen>,
    a: &mut Attempts<'_>,
    l: &mut Learned,
) -> Result<Done, GiveUp> {
    let in_doubt = a.ambiguous;
    let start = starting_state(c, icc, seen, a).await?;
    let sim = start.sim.clone();
    if sim.status == crate::api::super_sim::SCHEDULED {
        // A change is under way at the provider: what the SIM will be, and so what it was
        // before the row, is not known yet. Nothing is sent over it.
        l.before = Some(Before::Unknown);
        l.after = None;
        return Ok(under_way(in_doubt, &sim));
    }
    l.before = field_text(action, &sim).map(Before::Value);
    l.after = Some(start);
    if in_doubt && satisfied(action, &sim) {
        // The crashed run's write is in place; what the field held before it is unknown.
        l.before = Some(Before::Unknown);
        return Ok(Done::ok(None, APPLIED_EARLIER, Some(&sim)));
    }
    let (verdict, code, reason) = predict(action, &sim, &[]);
    if verdict == Verdict::Skipped {
        return Ok(Done::skipped(None, &reason, Some(&sim)));
    }
    if verdict == Verdict::Failed {
        l.predicted = Some(match code {
            Some(c) => format!("{reason} ({c})"),
            None => reason.into_owned(),
        });
    }
    let patch = patch_for(action).unwrap_or_default();
    a.ambiguous = false;
    loop {
        a.begin()?;
        if a.ambiguous {
            let at = Instant::now();
            match c.get_sim(icc).await {
                Ok(r) if satisfied(action, &r.value) => {
                    let d = Done::ok(Some(r.status), APPLIED_EARLIER, Some(&r.value));
                    l.after = Some(Seen::new(r.value, at, Source::Get));
                    return Ok(d);
                }
                Ok(r) => l.after = Some(Seen::new(r.value, at, Source::Get)),
                Err(e) => {
                    a.after(e).await?;
                    continue;
                }
            }
        }
        a.before_write().await?;
        let sent = Instant::now();
        match c.patch_sim(icc, &patch).await {
            Ok(r) => {
                let d = Done::ok(Some(r.status), "", r.value.as_ref());
                l.after = r.value.map(|s| Seen::new(s, sent, Source::Write));
                return Ok(d);
            }
            Err(ApiError::Rejected {
                code: Some(codes::ALREADY_DONE),
                status,
                message,
                ..
            }) => {
                l.after = None;
                // The SIM is as the row asks: the state read, with the row's change in it.
                let now = super::rules::apply(action, &sim);
                return Ok(Done::already_done(status, &message, &now));
            }
            Err(e) => {
                if e.ambiguous() {
                    l.after = None;
                }
                a.after(e).await?;
            }
        }
    }
}

/// A SIM found `scheduled` before the row wrote. In doubt (this job's earlier run may have
/// sent the change): as a write answered `scheduled` — the caller waits for it to settle or
/// leaves the row `pending`. Otherwise another change is under way: `pending`, unsent.
fn under_way(in_doubt: bool, sim: &Sim) -> Done {
    if in_doubt {
        return Done::ok(None, APPLIED_EARLIER, Some(sim));
    }
    Done {
        verdict: Verdict::Pending,
        status: None,
        code: None,
        message: "another change of this SIM is under way (scheduled); nothing was sent: run the row again once it has settled".into(),
        sim_status: Some(sim_status(sim)),
    }
}

/// The plan's word on an attribute row's SIM: suspended is noted (the provider decides).
fn attribute_plan(seen: Option<Seen>, l: &mut Learned) {
    if seen.as_ref().is_some_and(|s| s.sim.is_suspended()) {
        l.predicted = Some(format!(
            "the SIM is suspended; attributes cannot be changed ({})",
            codes::SUSPENDED
        ));
    }
    // Attribute writes leave the SIM's own state as it was.
    l.after = seen;
}

/// An attribute a row wants: its name and value.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Wanted<'a> {
    pub(crate) name: &'a str,
    pub(crate) value: &'a str,
}

/// `set-attribute`: the create first; on `16002` (or an ambiguous answer) the list, then
/// the update, or nothing when the value is already there. In a job whose creates mostly
/// meet existing names (`odds`), the list first.
pub(crate) async fn set_attribute(
    c: &Client,
    icc: &str,
    want: Wanted<'_>,
    seen: Option<Seen>,
    a: &mut Attempts<'_>,
    l: &mut Learned,
    odds: &CreateOdds,
) -> Result<Done, GiveUp> {
    let Wanted { name, value } = want;
    attribute_plan(seen, l);
    // A crashed run or a lost answer may have written it: look before anything.
    let mut maybe_applied = a.ambiguous;
    // A field that always exists (emnify) is read first: its value before is then known.
    let mut list_first = a.ambiguous || odds.list_first() || c.attributes_are_fields();
    let mut conflicts = 0;
    loop {
        a.begin()?;
        let existing = if list_first {
            match c.list_attributes(icc).await {
                Ok(r) => r.value.data.into_iter().find(|x| x.name == name),
                Err(e) => {
                    a.after(e).await?;
                    continue;
                }
            }
        } else {
            None
        };
        if let Some(x) = existing.as_ref().filter(|x| x.value == value) {
            if maybe_applied {
                // What it held before is what this row saw before its first write, if it
                // looked (an update's old value, or no attribute); otherwise unknown.
                l.before.get_or_insert(Before::Unknown);
                return Ok(Done::ok(None, APPLIED_EARLIER, None));
            }
            l.before = Some(Before::Value(x.value.clone()));
            return Ok(Done::skipped(
                None,
                "the attribute already has this value",
                None,
            ));
        }
        a.before_write().await?;
        let sent = write_attribute(c, icc, want, existing.as_ref(), list_first, l).await;
        if existing.is_none() {
            let refused = matches!(
                &sent,
                Err(ApiError::Rejected { code: Some(k), .. }) if *k == codes::DUPLICATE_ATTRIBUTE
            );
            odds.record(refused);
        }
        match sent {
            Ok(d) => return Ok(d),
            // There is one already (16002), or it went away underneath (6002 on an update).
            Err(ApiError::Rejected { code: Some(k), .. })
                if conflicts < MAX_CONFLICTS
                    && (k == codes::DUPLICATE_ATTRIBUTE
                        || (k == codes::NOT_FOUND && existing.is_some())) =>
            {
                conflicts += 1;
                list_first = true;
            }
            Err(e) => {
                if e.ambiguous() {
                    maybe_applied = true;
                    list_first = true;
                }
                a.after(e).await?;
            }
        }
    }
}

/// The update of `existing`, or the create of a new attribute; `before` is what it held
/// (absent only where a list said so, or the create succeeded: a create sent without a look
/// whose answer is lost leaves it unknown).
async fn write_attribute(
    c: &Client,
    icc: &str,
    want: Wanted<'_>,
    existing: Option<&crate::model::Attribute>,
    listed: bool,
    l: &mut Learned,
) -> Result<Done, ApiError> {
    let Wanted { name, value } = want;
    match existing {
        Some(x) => {
            l.before = Some(Before::Value(x.value.clone()));
            let body = AttributePatch {
                name: None,
                value: Some(value.into()),
            };
            let r = c.update_attribute(icc, x.icc_attribute_id, &body).await;
            r.map(|r| Done::ok(Some(r.status), "updated", None))
        }
        None => {
            if listed {
                l.before = Some(Before::Absent);
            }
            let body = AttributeCreate {
                name: name.into(),
                value: value.into(),
            };
            let r = c.create_attribute(icc, &body).await;
            r.map(|r| {
                l.before = Some(Before::Absent);
                Done::ok(Some(r.status), "created", None)
            })
        }
    }
}

/// `delete-attribute`: the list, then the delete of the named one.
pub(crate) async fn delete_attribute(
    c: &Client,
    icc: &str,
    name: &str,
    seen: Option<Seen>,
    a: &mut Attempts<'_>,
    l: &mut Learned,
) -> Result<Done, GiveUp> {
    attribute_plan(seen, l);
    let mut maybe_applied = a.ambiguous;
    let mut conflicts = 0;
    loop {
        a.begin()?;
        let list = match c.list_attributes(icc).await {
            Ok(r) => r.value.data,
            Err(e) => {
                a.after(e).await?;
                continue;
            }
        };
        let Some(x) = list.iter().find(|x| x.name == name) else {
            if maybe_applied {
                // The value deleted is what this row listed before its delete, if it did.
                l.before.get_or_insert(Before::Unknown);
                return Ok(Done::ok(None, APPLIED_EARLIER, None));
            }
            l.before = Some(Before::Absent);
            return Ok(Done::skipped(
                None,
                "the SIM has no attribute with this name",
                None,
            ));
        };
        l.before = Some(Before::Value(x.value.clone()));
        a.before_write().await?;
        match c.delete_attribute(icc, x.icc_attribute_id).await {
            Ok(r) => return Ok(Done::ok(Some(r.status), "deleted", None)),
            Err(ApiError::Rejected {
                code: Some(codes::NOT_FOUND),
                ..
            }) if conflicts < MAX_CONFLICTS => conflicts += 1,
            Err(e) => {
                if e.ambiguous() {
                    maybe_applied = true;
                }
                a.after(e).await?;
            }
        }
    }
}
