//! Desired-state files for `simbulk apply`: one row per SIM, with the value each writable
//! field should have — the columns `simbulk export` writes, so an export can be edited and
//! applied as it is.
//!
//! Guarantees: the file is read like a job's input (dialects, bounds, line numbers, bad rows
//! reported and skipped); header names are case-insensitive; an empty cell means "leave as
//! is" and [`DELETE`] in an `attr:NAME` cell deletes the attribute; read-only columns of an
//! export (`simId`, `adminSuspend`, `imsi`, …) are kept to be compared with the live SIM,
//! never written; a file with `action`, `value` or `attribute` columns (a `run` job) is
//! refused with the fix.

use std::path::Path;

use super::invalid::{Invalid, Reason};
use super::reader::{Item, Layout};
use crate::model::SimPatch;

/// The cell that deletes an attribute.
pub const DELETE: &str = "(delete)";

/// Columns of an export that describe the SIM but cannot be written.
pub(crate) const READ_ONLY: [&str; 8] = [
    "simId",
    "eid",
    "adminSuspend",
    "systemSuspend",
    "mnoId",
    "imsi",
    "msisdn",
    "modifiedDate",
];

/// Where the desired values are.
#[derive(Debug, Clone)]
pub(crate) struct DesiredLayout {
    status: Option<usize>,
    customer_suspend: Option<usize>,
    package_id: Option<usize>,
    portfolio_id: Option<usize>,
    /// `attr:NAME` columns: index and name.
    pub(crate) attrs: Vec<(usize, String)>,
    /// Read-only columns: index and name as the export spells it.
    read_only: Vec<(usize, &'static str)>,
}

/// Why a file cannot be applied.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DesiredError {
    #[error(
        "{} has an {column} column: it is a job of actions for `simbulk run`; a desired-state file has iccid and the fields' values (status, customerSuspend, packageId, portfolioId, attr:NAME), as `simbulk export` writes them",
        path.display()
    )]
    ActionColumns {
        path: std::path::PathBuf,
        column: String,
    },
    #[error(
        "{} has no column to apply: give status, customerSuspend, packageId, portfolioId or attr:NAME columns (as `simbulk export --with-attributes` writes them)",
        path.display()
    )]
    Nothing { path: std::path::PathBuf },
}

impl DesiredLayout {
    /// Maps the header of a desired-state file.
    pub(crate) fn of(layout: &Layout, path: &Path) -> Result<Self, DesiredError> {
        let mut d = DesiredLayout {
            status: None,
            customer_suspend: None,
            package_id: None,
            portfolio_id: None,
            attrs: Vec::new(),
            read_only: Vec::new(),
        };
        for (i, name) in layout.header.iter().enumerate() {
            let lower = name.to_ascii_lowercase();
            if let Some(attr) = lower.strip_prefix("attr:") {
                // The name as written after the prefix (attribute names are case-sensitive).
                let attr = &name[name.len() - attr.len()..];
                d.attrs.push((i, attr.to_owned()));
                continue;
            }
            match lower.as_str() {
                "action" | "value" | "attribute" => {
                    return Err(DesiredError::ActionColumns {
                        path: path.to_owned(),
                        column: name.clone(),
                    });
                }
                "status" => d.status = Some(i),
                "customersuspend" => d.customer_suspend = Some(i),
                "packageid" => d.package_id = Some(i),
                "portfolioid" => d.portfolio_id = Some(i),
                _ => {
                    if let Some(ro) = READ_ONLY.iter().find(|r| r.eq_ignore_ascii_case(name)) {
                        d.read_only.push((i, ro));
                    }
                }
            }
        }
        let any = d
            .status
            .or(d.customer_suspend)
            .or(d.package_id)
            .or(d.portfolio_id);
        if any.is_none() && d.attrs.is_empty() {
            return Err(DesiredError::Nothing {
                path: path.to_owned(),
            });
        }
        Ok(d)
    }
}

/// What a row wants of its SIM.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Desired {
    pub(crate) fields: SimPatch,
    /// Attribute name → the value it should have (`None`: absent).
    pub(crate) attrs: Vec<(String, Option<String>)>,
    /// Read-only columns with a value: name and value, to compare with the live SIM.
    pub(crate) read_only: Vec<(&'static str, String)>,
    /// The status cell says `pendingProvision`: the SIM should be activated or on its way.
    pub(crate) pending: bool,
}

impl Desired {
    /// Whether the row asks for anything at all.
    pub(crate) fn is_empty(&self) -> bool {
        self.fields == SimPatch::default() && self.attrs.is_empty() && !self.pending
    }
}

/// What `item` (a row of a desired-state file) wants; the error says which cell is wrong.
pub(crate) fn desired(item: &Item, l: &DesiredLayout) -> Result<Desired, Invalid> {
    let cell = |i: Option<usize>| i.and_then(|i| item.fields.get(i)).map_or("", |s| s.trim());
    let bad = |column: &str, v: &str, want: &str| {
        let shown: String = v.chars().take(40).collect();
        Invalid::new(
            Reason::BadDesired,
            format!(
                "{column} {shown:?} is not {want}; leave the cell empty to keep the SIM's value"
            ),
        )
    };
    let mut d = Desired::default();
    match cell(l.status) {
        "" => {}
        s @ ("active" | "available") => d.fields.status = Some(s.to_owned()),
        // A status the provider sets while an activation is under way (as `export` writes
        // it): no change asked of a SIM in it or past it.
        "pendingProvision" => d.pending = true,
        s => {
            return Err(bad(
                "status",
                s,
                "active or available (the statuses a client may set)",
            ));
        }
    }
    match cell(l.customer_suspend).to_ascii_lowercase().as_str() {
        "" => {}
        "true" => d.fields.customer_suspend = Some(true),
        "false" => d.fields.customer_suspend = Some(false),
        s => return Err(bad("customerSuspend", s, "true or false")),
    }
    match cell(l.package_id) {
        "" => {}
        s => match s.parse::<i64>() {
            Ok(k) if k > 0 => d.fields.package_id = Some(k),
            _ => return Err(bad("packageId", s, "a positive whole number")),
        },
    }
    match cell(l.portfolio_id) {
        "" => {}
        s if s.chars().count() > 128 || s.chars().any(char::is_control) => {
            return Err(bad("portfolioId", s, "a portfolio id"));
        }
        s => d.fields.portfolio_id = Some(s.to_owned()),
    }
    for (i, name) in &l.attrs {
        match cell(Some(*i)) {
            "" => {}
            DELETE => d.attrs.push((name.clone(), None)),
            v if v.chars().count() > 255 => {
                return Err(bad(&format!("attr:{name}"), v, "at most 255 characters"));
            }
            v => d.attrs.push((name.clone(), Some(v.to_owned()))),
        }
    }
    for (i, name) in &l.read_only {
        let v = cell(Some(*i));
        if !v.is_empty() {
            d.read_only.push((name, v.to_owned()));
        }
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(header: &[&str]) -> Layout {
        Layout {
            delimiter: b',',
            headerless: false,
            header: header.iter().map(|s| (*s).to_owned()).collect(),
            iccid: 0,
            action: None,
            value: None,
            attribute: None,
            carried: Vec::new(),
            header_raw: Vec::new(),
        }
    }

    fn item(cells: &[&str]) -> Item {
        Item {
            line: 2,
            fields: cells.iter().map(|s| (*s).to_owned()).collect(),
            raw: Vec::new(),
            parsed: Err(Invalid::new(Reason::NoAction, String::new())),
        }
    }

    #[test]
    fn an_export_header_maps_and_cells_read_as_export_writes_them() {
        let l = layout(&[
            "iccid",
            "simId",
            "STATUS",
            "customerSuspend",
            "packageId",
            "attr:Site",
        ]);
        let dl = DesiredLayout::of(&l, Path::new("f")).unwrap();
        let d = desired(
            &item(&["1", "5001", "active", "FALSE", "20533", "berlin"]),
            &dl,
        )
        .unwrap();
        assert_eq!(d.fields.status.as_deref(), Some("active"));
        assert_eq!(d.fields.customer_suspend, Some(false));
        assert_eq!(d.fields.package_id, Some(20533));
        assert_eq!(
            d.attrs,
            vec![("Site".to_owned(), Some("berlin".to_owned()))]
        );
        assert_eq!(d.read_only, vec![("simId", "5001".to_owned())]);
        let keep = desired(&item(&["1", "", "", "", "", DELETE]), &dl).unwrap();
        assert_eq!(keep.attrs, vec![("Site".to_owned(), None)]);
        assert!(keep.fields == SimPatch::default());
        assert!(
            desired(&item(&["1", "", "pendingProvision", "", "", ""]), &dl)
                .unwrap()
                .pending
        );
        assert!(desired(&item(&["1", "", "scheduled", "", "", ""]), &dl).is_err());
        assert!(desired(&item(&["1", "", "", "yes", "", ""]), &dl).is_err());
        assert!(desired(&item(&["1", "", "", "", "-3", ""]), &dl).is_err());
    }

    #[test]
    fn a_run_job_or_a_file_with_nothing_to_apply_is_refused() {
        let run = layout(&["iccid", "action", "value"]);
        assert!(DesiredLayout::of(&run, Path::new("f")).is_err());
        let bare = layout(&["iccid", "imsi"]);
        assert!(DesiredLayout::of(&bare, Path::new("f")).is_err());
    }
}
