//! The actions a row can ask for and the API change each one means.
//!
//! Guarantees: an [`Action`] carries validated arguments (a package id is a positive integer,
//! an attribute name fits the contract's 64 characters, a value its 255), so the engine never
//! sends a request the API would reject for its shape.

use std::fmt;

use super::invalid::{Invalid, Reason};
use crate::model::SimPatch;

/// One change to one SIM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Status `active`.
    Activate,
    /// Status `available`.
    Deactivate,
    /// `customerSuspend` true.
    Suspend,
    /// `customerSuspend` false.
    Unsuspend,
    /// Move the SIM to a package.
    SetPackage(i64),
    /// Move the SIM to a portfolio.
    SetPortfolio(String),
    /// Set an attribute (created when absent).
    SetAttribute {
        /// The attribute's name.
        name: String,
        /// The value to set.
        value: String,
    },
    /// Delete an attribute.
    DeleteAttribute {
        /// The attribute's name.
        name: String,
    },
    /// Several SIM fields in one PATCH (`simbulk apply` plans them where they must, or can,
    /// go together); value `status=active;packageId=20533;portfolioId=pf-x`.
    Patch(SimPatch),
    /// A change `simbulk apply` found no order for; nothing is sent and the row fails with
    /// this reason.
    Blocked(String),
}

/// The action names, as users write them (case-insensitive), without arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ActionKind {
    /// Status `active`.
    Activate,
    /// Status `available`.
    Deactivate,
    /// `customerSuspend` true.
    Suspend,
    /// `customerSuspend` false.
    Unsuspend,
    /// Move the SIM to a package.
    SetPackage,
    /// Move the SIM to a portfolio.
    SetPortfolio,
    /// Set an attribute (created when absent).
    SetAttribute,
    /// Delete an attribute.
    DeleteAttribute,
    /// Several SIM fields in one PATCH.
    Patch,
    /// A change `apply` found no order for.
    Blocked,
}

impl ActionKind {
    pub(crate) const ALL: [ActionKind; 10] = [
        ActionKind::Activate,
        ActionKind::Deactivate,
        ActionKind::Suspend,
        ActionKind::Unsuspend,
        ActionKind::SetPackage,
        ActionKind::SetPortfolio,
        ActionKind::SetAttribute,
        ActionKind::DeleteAttribute,
        ActionKind::Patch,
        ActionKind::Blocked,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            ActionKind::Activate => "activate",
            ActionKind::Deactivate => "deactivate",
            ActionKind::Suspend => "suspend",
            ActionKind::Unsuspend => "unsuspend",
            ActionKind::SetPackage => "set-package",
            ActionKind::SetPortfolio => "set-portfolio",
            ActionKind::SetAttribute => "set-attribute",
            ActionKind::DeleteAttribute => "delete-attribute",
            ActionKind::Patch => "patch",
            ActionKind::Blocked => "blocked",
        }
    }

    /// Parses an action name or alias, case-insensitively (`_` and `-` alike).
    pub(crate) fn parse(s: &str) -> Option<Self> {
        let norm = s.trim().to_ascii_lowercase().replace('_', "-");
        match norm.as_str() {
            "change-package" => Some(ActionKind::SetPackage),
            "change-portfolio" => Some(ActionKind::SetPortfolio),
            n => Self::ALL.into_iter().find(|k| k.name() == n),
        }
    }

    /// The action a mistyped name most likely meant (`actviate` → activate), the same
    /// suggestion wherever an action is read.
    pub(crate) fn closest(s: &str) -> Option<Self> {
        let norm = s.trim().to_ascii_lowercase().replace('_', "-");
        Self::ALL
            .into_iter()
            .map(|k| (strsim::damerau_levenshtein(&norm, k.name()), k))
            .filter(|(d, _)| *d <= 2)
            .min_by_key(|(d, _)| *d)
            .map(|(_, k)| k)
    }

    /// Whether the action needs a `value` cell.
    pub(crate) fn needs_value(self) -> bool {
        matches!(
            self,
            ActionKind::SetPackage
                | ActionKind::SetPortfolio
                | ActionKind::SetAttribute
                | ActionKind::Patch
                | ActionKind::Blocked
        )
    }

    /// Whether the action needs an `attribute` cell.
    pub(crate) fn needs_attribute(self) -> bool {
        matches!(self, ActionKind::SetAttribute | ActionKind::DeleteAttribute)
    }
}

impl fmt::Display for ActionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The value and attribute cells an action of `kind` needs are there and within the API's
/// limits.
fn check_cells(kind: ActionKind, value: &str, attribute: &str) -> Result<(), Invalid> {
    let refuse = |reason, message: String| Err(Invalid::new(reason, message));
    if kind.needs_value() && value.is_empty() {
        let what = match kind {
            ActionKind::SetPackage => "the package id",
            ActionKind::SetPortfolio => "the portfolio id",
            _ => "the attribute's value",
        };
        return refuse(
            Reason::NoValue,
            format!("{kind} needs a value; put {what} in the value column or pass --value"),
        );
    }
    let name_len = attribute.chars().count();
    if kind.needs_attribute() && name_len == 0 {
        return refuse(
            Reason::NoAttribute,
            format!(
                "{kind} needs an attribute name; put it in the attribute column or pass --attribute"
            ),
        );
    }
    if kind.needs_attribute() && name_len > 64 {
        return refuse(
            Reason::NameTooLong,
            format!("attribute name is {name_len} characters; the API allows at most 64"),
        );
    }
    let value_len = value.chars().count();
    if kind == ActionKind::SetPortfolio && (value_len > 128 || value.chars().any(char::is_control))
    {
        return refuse(
            Reason::BadPortfolio,
            "portfolio id is longer than 128 characters or has control characters; check the value column".into(),
        );
    }
    if kind == ActionKind::SetAttribute && value_len > 255 {
        return refuse(
            Reason::ValueTooLong,
            format!("attribute value is {value_len} characters; the API allows at most 255"),
        );
    }
    Ok(())
}

/// A package id: a positive whole number.
fn package(value: &str) -> Result<i64, Invalid> {
    match value.parse::<i64>() {
        Ok(p) if p > 0 => Ok(p),
        _ => {
            let shown: String = value.chars().take(40).collect();
            Err(Invalid::new(
                Reason::BadPackage,
                format!(
                    "package id {shown:?} is not a positive whole number; put the numeric package id in the value column"
                ),
            ))
        }
    }
}

const KNOWN: &str = "activate, deactivate, suspend, unsuspend, set-package, set-portfolio, set-attribute, delete-attribute (and patch, blocked in plans of simbulk apply)";

/// The fields of a `patch` value, `status=…;customerSuspend=…;packageId=…;portfolioId=…`.
pub(crate) fn patch_text(p: &SimPatch) -> String {
    let mut parts = Vec::new();
    if let Some(s) = &p.status {
        parts.push(format!("status={s}"));
    }
    if let Some(c) = p.customer_suspend {
        parts.push(format!("customerSuspend={c}"));
    }
    if let Some(k) = p.package_id {
        parts.push(format!("packageId={k}"));
    }
    if let Some(f) = &p.portfolio_id {
        parts.push(format!("portfolioId={f}"));
    }
    parts.join(";")
}

/// Reads a `patch` value.
pub(crate) fn parse_patch(value: &str) -> Result<SimPatch, Invalid> {
    let bad = |why: String| Invalid::new(Reason::BadPatch, why);
    let mut p = SimPatch::default();
    for part in value.split(';').map(str::trim).filter(|s| !s.is_empty()) {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| bad(format!("patch part {part:?} is not field=value")))?;
        match k.trim().to_ascii_lowercase().as_str() {
            "status" if matches!(v, "active" | "available") => p.status = Some(v.into()),
            "status" => return Err(bad(format!("status {v:?} is not active or available"))),
            "customersuspend" => {
                p.customer_suspend = Some(
                    v.parse()
                        .map_err(|_| bad(format!("customerSuspend {v:?} is not true or false")))?,
                );
            }
            "packageid" => p.package_id = Some(package(v)?),
            "portfolioid" => {
                check_cells(ActionKind::SetPortfolio, v, "")?;
                p.portfolio_id = Some(v.to_owned());
            }
            other => {
                return Err(bad(format!(
                    "patch field {other:?} is not one a client may set"
                )));
            }
        }
    }
    if p == SimPatch::default() {
        return Err(bad("a patch needs at least one field=value".into()));
    }
    Ok(p)
}

impl Action {
    pub(crate) fn kind(&self) -> ActionKind {
        match self {
            Action::Activate => ActionKind::Activate,
            Action::Deactivate => ActionKind::Deactivate,
            Action::Suspend => ActionKind::Suspend,
            Action::Unsuspend => ActionKind::Unsuspend,
            Action::SetPackage(_) => ActionKind::SetPackage,
            Action::SetPortfolio(_) => ActionKind::SetPortfolio,
            Action::SetAttribute { .. } => ActionKind::SetAttribute,
            Action::DeleteAttribute { .. } => ActionKind::DeleteAttribute,
            Action::Patch(_) => ActionKind::Patch,
            Action::Blocked(_) => ActionKind::Blocked,
        }
    }

    /// Builds an action from a row's (already defaulted and trimmed) cells.
    /// The error says what is wrong and how to fix it.
    pub(crate) fn build(action: &str, value: &str, attribute: &str) -> Result<Self, Invalid> {
        if action.is_empty() {
            return Err(Invalid::new(
                Reason::NoAction,
                format!("no action; fill the action column or pass --action (one of {KNOWN})"),
            ));
        }
        let Some(kind) = ActionKind::parse(action) else {
            let shown: String = action.chars().take(40).collect();
            let hint = ActionKind::closest(action)
                .map_or_else(String::new, |k| format!("did you mean {k}? "));
            return Err(Invalid::new(
                Reason::UnknownAction,
                format!("unknown action {shown:?}; {hint}use one of {KNOWN}"),
            ));
        };
        check_cells(kind, value, attribute)?;
        Ok(match kind {
            ActionKind::Activate => Action::Activate,
            ActionKind::Deactivate => Action::Deactivate,
            ActionKind::Suspend => Action::Suspend,
            ActionKind::Unsuspend => Action::Unsuspend,
            ActionKind::SetPackage => Action::SetPackage(package(value)?),
            ActionKind::SetPortfolio => Action::SetPortfolio(value.to_owned()),
            ActionKind::SetAttribute => Action::SetAttribute {
                name: attribute.to_owned(),
                value: value.to_owned(),
            },
            ActionKind::Patch => Action::Patch(parse_patch(value)?),
            ActionKind::Blocked => Action::Blocked(value.chars().take(255).collect()),
            ActionKind::DeleteAttribute => Action::DeleteAttribute {
                name: attribute.to_owned(),
            },
        })
    }

    /// The `value` cell this action stands for, as written back to the results.
    pub(crate) fn value_text(&self) -> String {
        match self {
            Action::SetPackage(p) => p.to_string(),
            Action::SetPortfolio(p) => p.clone(),
            Action::SetAttribute { value, .. } => value.clone(),
            Action::Patch(p) => patch_text(p),
            Action::Blocked(why) => why.clone(),
            _ => String::new(),
        }
    }

    /// The attribute an attribute action names (`None` for the other actions).
    pub(crate) fn attribute_name(&self) -> Option<&str> {
        match self {
            Action::SetAttribute { name, .. } | Action::DeleteAttribute { name } => Some(name),
            _ => None,
        }
    }

    /// The `attribute` cell this action stands for.
    pub(crate) fn attribute_text(&self) -> &str {
        match self {
            Action::SetAttribute { name, .. } | Action::DeleteAttribute { name } => name,
            _ => "",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mistyped_action_cell_gets_the_same_suggestion_as_the_flag() {
        assert_eq!(ActionKind::closest("actviate"), Some(ActionKind::Activate));
        assert_eq!(
            ActionKind::closest("Set_Pakage"),
            Some(ActionKind::SetPackage)
        );
        assert_eq!(ActionKind::closest("reboot"), None);
        let e = Action::build("actviate", "", "").unwrap_err();
        assert!(
            e.message.contains("did you mean activate?"),
            "{}",
            e.message
        );
    }

    #[test]
    fn names_aliases_and_case_are_accepted() {
        assert_eq!(ActionKind::parse("ACTIVATE"), Some(ActionKind::Activate));
        assert_eq!(
            ActionKind::parse("change-package"),
            Some(ActionKind::SetPackage)
        );
        assert_eq!(
            ActionKind::parse("Change_Portfolio"),
            Some(ActionKind::SetPortfolio)
        );
        assert_eq!(
            ActionKind::parse("set_attribute"),
            Some(ActionKind::SetAttribute)
        );
        assert_eq!(ActionKind::parse("explode"), None);
    }

    #[test]
    fn arguments_are_checked_with_a_fix() {
        assert_eq!(
            Action::build("set-package", "20418", ""),
            Ok(Action::SetPackage(20418))
        );
        assert!(
            Action::build("set-package", "", "")
                .unwrap_err()
                .message
                .contains("--value")
        );
        assert!(
            Action::build("set-package", "abc", "")
                .unwrap_err()
                .message
                .contains("positive whole number")
        );
        assert!(
            Action::build("set-attribute", "v", "")
                .unwrap_err()
                .message
                .contains("--attribute")
        );
        assert!(Action::build("delete-attribute", "", "x".repeat(65).as_str()).is_err());
        assert!(
            Action::build("", "", "")
                .unwrap_err()
                .message
                .contains("--action")
        );
        assert!(
            Action::build("nuke", "", "")
                .unwrap_err()
                .message
                .contains("unknown action")
        );
    }
}
