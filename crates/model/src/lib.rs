//! Serde types of the SIM API contract (`docs/sim-api`), shared by the client and the
//! simulator and by nothing else.
//!
//! Guarantees: the reading side is tolerant (unknown fields are ignored, `status` is an open
//! string, both error body shapes parse into [`ErrorBody`], a flag may be `true`/`"true"`/
//! `"yes"`/`1` as providers' documents differ, an attribute's name may come as `key`); every
//! type here is written exactly as the contract spells it, and the request bodies (which the
//! simulator reads) are read as strictly as the contract defines them.
//!
//! [`clock`]: the time formats of the contract and of every file (RFC 3339, HTTP dates,
//! friendly durations), shared by both sides too.

#![warn(missing_docs)]
pub mod clock;

use serde::{Deserialize, Serialize};

/// A SIM as the API returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Sim {
    /// The SIM's ICCID (19 or 20 digits): its id in every call.
    pub icc_id: String,
    #[serde(default)]
    /// The provider's own id of the SIM.
    pub sim_id: Option<String>,
    #[serde(default)]
    /// The eUICC's id, for an eSIM.
    pub eid: Option<String>,
    /// An open set: `available`, `pendingProvision`, `active` and whatever else a provider sends.
    pub status: String,
    #[serde(deserialize_with = "loose_bool")]
    /// Suspended by the customer (the one suspension a client may change).
    pub customer_suspend: bool,
    #[serde(deserialize_with = "loose_bool")]
    /// Suspended by the provider's administration.
    pub admin_suspend: bool,
    #[serde(deserialize_with = "loose_bool")]
    /// Suspended by the provider's systems.
    pub system_suspend: bool,
    /// The package (tariff) the SIM is on.
    pub package_id: i64,
    /// The portfolio the SIM belongs to.
    pub portfolio_id: String,
    /// The mobile network operator of the SIM's package.
    pub mno_id: i64,
    #[serde(default)]
    /// The SIM's IMSI, once provisioned.
    pub imsi: Option<String>,
    #[serde(default)]
    /// The SIM's phone number, once provisioned.
    pub msisdn: Option<String>,
    #[serde(default)]
    /// When it last changed (RFC 3339).
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
    /// The status to set (`active`, `available`).
    pub status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    /// The customer suspension to set.
    pub customer_suspend: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    /// The package to move the SIM to.
    pub package_id: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    /// The portfolio to move the SIM to.
    pub portfolio_id: Option<String>,
}

/// One page of `GET /api/v2/sim`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SimPage {
    /// This page's items.
    pub data: Vec<Sim>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// The token of the next page; none (or empty) on the last.
    pub next_page_token: Option<String>,
}

/// A name/value attribute of one SIM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attribute {
    /// The attribute's id, for its update and delete.
    pub icc_attribute_id: i64,
    /// The SIM's ICCID (19 or 20 digits): its id in every call.
    pub icc_id: String,
    #[serde(alias = "key")]
    /// The attribute's name.
    pub name: String,
    /// The attribute's value.
    pub value: String,
    #[serde(default)]
    /// When it was created (RFC 3339).
    pub created_date: Option<String>,
    #[serde(default)]
    /// When it last changed (RFC 3339).
    pub modified_date: Option<String>,
}

/// `GET /api/v2/sim/{iccId}/attribute`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttributeList {
    /// This page's items.
    pub data: Vec<Attribute>,
}

/// Body of `POST /api/v2/sim/{iccId}/attribute`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttributeCreate {
    /// The attribute's name.
    pub name: String,
    /// The attribute's value.
    pub value: String,
}

/// Body of `PATCH /api/v2/sim/{iccId}/attribute/{iccAttributeId}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttributePatch {
    #[serde(skip_serializing_if = "Option::is_none")]
    /// The attribute's name.
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    /// The attribute's value.
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
    /// The contract's error code (e.g. 6002: no such SIM).
    pub error_code: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// The error's tag, a short name of the code.
    pub error_tag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// The provider's words for the error.
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// Anything more the provider says, as it says it.
    pub additional_details: Option<serde_json::Value>,
}

/// Reply of `POST /oauth2/token`.
#[derive(Clone, Serialize, Deserialize)]
pub struct TokenResponse {
    /// The bearer token (never logged: `Debug` redacts it).
    pub access_token: String,
    /// `Bearer`.
    pub token_type: String,
    /// Seconds the token is valid for.
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
    /// The OAuth2 error (`invalid_client`, …).
    pub error: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// The identity provider's words for it.
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
