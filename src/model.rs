//! Serde types of the SIM API contract (`docs/sim-api`), shared by the client and the
//! simulator and by nothing else.
//!
//! Guarantees: the reading side is tolerant (unknown fields are ignored, `status` is an open
//! string, both error body shapes parse into [`ErrorBody`], a flag may be `true`/`"true"`/
//! `"yes"`/`1` as providers' documents differ, an attribute's name may come as `key`); every
//! type here is written exactly as the contract spells it, and the request bodies (which the
//! simulator reads) are read as strictly as the contract defines them.

use serde::{Deserialize, Serialize};

/// A SIM as the API returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Sim {
    pub icc_id: String,
    #[serde(default)]
    pub sim_id: Option<String>,
    #[serde(default)]
    pub eid: Option<String>,
    /// An open set: `available`, `pendingProvision`, `active` and whatever else a provider sends.
    pub status: String,
    #[serde(deserialize_with = "loose_bool")]
    pub customer_suspend: bool,
    #[serde(deserialize_with = "loose_bool")]
    pub admin_suspend: bool,
    #[serde(deserialize_with = "loose_bool")]
    pub system_suspend: bool,
    pub package_id: i64,
    pub portfolio_id: String,
    pub mno_id: i64,
    #[serde(default)]
    pub imsi: Option<String>,
    #[serde(default)]
    pub msisdn: Option<String>,
    #[serde(default)]
    pub modified_date: Option<String>,
}

impl Sim {
    /// A SIM is suspended when any of its three flags is set.
    pub fn is_suspended(&self) -> bool {
        self.customer_suspend || self.admin_suspend || self.system_suspend
    }
}

/// Body of `PATCH /api/v2/sim/{iccId}`; absent fields stay unchanged.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SimPatch {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub customer_suspend: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub package_id: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub portfolio_id: Option<String>,
}

/// One page of `GET /api/v2/sim`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SimPage {
    pub data: Vec<Sim>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
}

/// A name/value attribute of one SIM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attribute {
    pub icc_attribute_id: i64,
    pub icc_id: String,
    #[serde(alias = "key")]
    pub name: String,
    pub value: String,
    #[serde(default)]
    pub created_date: Option<String>,
    #[serde(default)]
    pub modified_date: Option<String>,
}

/// `GET /api/v2/sim/{iccId}/attribute`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttributeList {
    pub data: Vec<Attribute>,
}

/// Body of `POST /api/v2/sim/{iccId}/attribute`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttributeCreate {
    pub name: String,
    pub value: String,
}

/// Body of `PATCH /api/v2/sim/{iccId}/attribute/{iccAttributeId}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttributePatch {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// A flag as providers write it: `true`/`false`, `"true"`/`"false"`, `"yes"`/`"no"` (any
/// case), or `1`/`0`.
#[derive(Deserialize)]
#[serde(untagged)]
enum LooseBool {
    Bool(bool),
    Number(i64),
    Text(String),
}

impl LooseBool {
    fn get<E: serde::de::Error>(self) -> Result<bool, E> {
        match self {
            LooseBool::Bool(b) => Ok(b),
            LooseBool::Number(0) => Ok(false),
            LooseBool::Number(1) => Ok(true),
            LooseBool::Text(t) => match t.trim().to_ascii_lowercase().as_str() {
                "true" | "yes" | "y" | "1" => Ok(true),
                "false" | "no" | "n" | "0" => Ok(false),
                _ => Err(E::custom(format!(
                    "expected a flag (true/false, yes/no, 1/0), found {:?}",
                    t.chars().take(20).collect::<String>()
                ))),
            },
            LooseBool::Number(n) => Err(E::custom(format!("expected a flag (1/0), found {n}"))),
        }
    }
}

fn loose_bool<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    LooseBool::deserialize(d)?.get()
}

/// Both error shapes: the application `Error` body and the gateway's `{"message": …}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_tag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub additional_details: Option<serde_json::Value>,
}

/// Reply of `POST /oauth2/token`.
#[derive(Clone, Serialize, Deserialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: String,
    pub expires_in: u64,
}

impl std::fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenResponse")
            .field("access_token", &"[REDACTED]")
            .field("token_type", &self.token_type)
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

/// Rejection from the token endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OAuthError {
    pub error: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_description: Option<String>,
}

/// Error codes of the contract's catalogue that the client acts on.
pub mod codes {
    /// The SIM (or attribute) does not exist or is not visible to this client.
    pub const NOT_FOUND: i64 = 6002;
    /// The request body is not what the endpoint takes.
    pub const BAD_BODY: i64 = 6006;
    /// A value is malformed or out of range (an ICCID, a field, a name, a value).
    pub const FIELD_REJECTED: i64 = 6014;
    /// The body changes nothing.
    pub const EMPTY_BODY: i64 = 6017;
    /// The target portfolio is not active.
    pub const PORTFOLIO_NOT_ACTIVE: i64 = 6023;
    /// The client lacks the permission for this call.
    pub const PERMISSION: i64 = 6024;
    /// The target portfolio is outside the client's sphere.
    pub const PORTFOLIO_OUT_OF_SPHERE: i64 = 6026;
    /// The SIM's status does not allow this change.
    pub const WRONG_STATUS: i64 = 6046;
    /// The SIM is already in the requested state.
    pub const ALREADY_DONE: i64 = 6047;
    /// The requested status is not one a client may set.
    pub const STATUS_NOT_ALLOWED: i64 = 6048;
    /// An attribute name is empty.
    pub const EMPTY_NAME: i64 = 6053;
    /// A list filter the API does not know.
    pub const UNKNOWN_FILTER: i64 = 6054;
    /// The SIM is suspended and cannot take this change.
    pub const SUSPENDED: i64 = 16000;
    /// After the portfolio move the package would not be linked to it.
    pub const PACKAGE_UNLINKED_AFTER_MOVE: i64 = 16001;
    /// The SIM already has an attribute of this name.
    pub const DUPLICATE_ATTRIBUTE: i64 = 16002;
    /// The target portfolio is deleted.
    pub const PORTFOLIO_DELETED: i64 = 16003;
    /// A package cannot be removed.
    pub const NULL_PACKAGE: i64 = 16004;
    /// The package is not linked to the SIM's portfolio.
    pub const PACKAGE_NOT_LINKED: i64 = 16005;
    /// The package is not active.
    pub const PACKAGE_NOT_ACTIVE: i64 = 16006;
    /// The package belongs to another network operator.
    pub const MNO_MISMATCH: i64 = 16007;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_body_parses_both_shapes() {
        let app: ErrorBody = serde_json::from_str(
            r#"{"errorCode":16000,"errorTag":"invalid_request_error","message":"SIM is suspended","additionalDetails":{"x":1}}"#,
        )
        .unwrap();
        assert_eq!(app.error_code, Some(16000));
        let gw: ErrorBody = serde_json::from_str(r#"{"message":"Too Many Requests"}"#).unwrap();
        assert_eq!(gw.error_code, None);
        assert_eq!(gw.message.as_deref(), Some("Too Many Requests"));
    }

    #[test]
    fn sim_tolerates_unknown_fields_and_status_values() {
        let sim: Sim = serde_json::from_str(
            r#"{"iccId":"8944500990000012342","status":"provisioned","customerSuspend":false,
            "adminSuspend":false,"systemSuspend":false,"packageId":1,"portfolioId":"p","mnoId":2,"extra":[1]}"#,
        )
        .unwrap();
        assert_eq!(sim.status, "provisioned");
        assert_eq!(sim.sim_id, None);
    }

    #[test]
    fn flags_and_attribute_names_are_read_in_the_forms_providers_use() {
        let json = |cs: &str| {
            format!(
                r#"{{"iccId":"1","status":"active","customerSuspend":{cs},"adminSuspend":0,"systemSuspend":"NO","packageId":1,"portfolioId":"p","mnoId":2}}"#
            )
        };
        for (cs, want) in [
            ("true", true),
            ("\"yes\"", true),
            ("\"no\"", false),
            ("1", true),
            ("\"False\"", false),
        ] {
            let sim: Sim = serde_json::from_str(&json(cs)).unwrap();
            assert_eq!(sim.customer_suspend, want, "{cs}");
            assert!(!sim.admin_suspend && !sim.system_suspend);
        }
        for bad in ["\"maybe\"", "2", "null"] {
            assert!(serde_json::from_str::<Sim>(&json(bad)).is_err(), "{bad}");
        }
        let a: Attribute =
            serde_json::from_str(r#"{"iccAttributeId":1,"iccId":"1","key":"k","value":"v"}"#)
                .unwrap();
        assert_eq!(a.name, "k");
        // Written as the contract spells it.
        assert!(
            serde_json::to_string(&a)
                .unwrap()
                .contains("\"name\":\"k\"")
        );
    }

    #[test]
    fn token_debug_redacts_the_token() {
        let t = TokenResponse {
            access_token: "sim_at_secret".into(),
            token_type: "Bearer".into(),
            expires_in: 5,
        };
        assert!(!format!("{t:?}").contains("sim_at_secret"));
    }
}
