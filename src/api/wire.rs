//! How request bodies are spelled on the wire. The contract's form (booleans, an attribute's
//! `name`) is the default; a provider whose documents say otherwise gets its own form from a
//! profile's `[profiles.NAME.wire]` table: `suspend = "yes-no"` writes `customerSuspend` as
//! `"yes"`/`"no"`, `attribute-name = "key"` writes an attribute's name as `key`.
//!
//! Guarantees: only those two fields change; answers are read in every form whatever the
//! setting (see [`crate::model`]).

use serde::{Deserialize, Serialize};

/// The spelling of request bodies.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Wire {
    #[serde(default)]
    /// How `customerSuspend` is spelled in requests.
    pub suspend: SuspendForm,
    #[serde(default, alias = "attribute_name")]
    /// The key of an attribute's name in requests.
    pub attribute_name: NameForm,
}

/// How `customerSuspend` is written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SuspendForm {
    /// `true` / `false` (the contract).
    #[default]
    Bool,
    /// `"yes"` / `"no"`.
    YesNo,
}

/// The key of an attribute's name.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NameForm {
    /// `name` (the contract).
    #[default]
    Name,
    /// `key`.
    Key,
}

impl Wire {
    /// Whether bodies go as the contract spells them.
    pub(crate) fn is_contract(self) -> bool {
        self == Wire::default()
    }

    /// A body in this form (a JSON object; anything else is left as it is).
    pub(crate) fn shape(self, mut v: serde_json::Value) -> serde_json::Value {
        let Some(o) = v.as_object_mut() else {
            return v;
        };
        if self.suspend == SuspendForm::YesNo
            && let Some(b) = o
                .get("customerSuspend")
                .and_then(serde_json::Value::as_bool)
        {
            o.insert(
                "customerSuspend".into(),
                (if b { "yes" } else { "no" }).into(),
            );
        }
        if self.attribute_name == NameForm::Key
            && let Some(n) = o.remove("name")
        {
            o.insert("key".into(), n);
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_only_the_two_fields() {
        let w = Wire {
            suspend: SuspendForm::YesNo,
            attribute_name: NameForm::Key,
        };
        let v = w.shape(serde_json::json!({"customerSuspend": true, "status": "active"}));
        assert_eq!(
            v,
            serde_json::json!({"customerSuspend": "yes", "status": "active"})
        );
        let v = w.shape(serde_json::json!({"name": "k", "value": "v"}));
        assert_eq!(v, serde_json::json!({"key": "k", "value": "v"}));
        assert!(Wire::default().is_contract());
        let t: Wire = toml::from_str("suspend = \"yes-no\"\nattribute-name = \"key\"").unwrap();
        assert_eq!(t, w);
        assert!(toml::from_str::<Wire>("suspnd = \"yes-no\"").is_err());
    }
}
