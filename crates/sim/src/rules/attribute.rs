//! Attribute writes: their body's shape and the rules (suspended SIM, unique names).

use serde_json::{Value, json};

use crate::model::{Attribute, codes};

use super::super::state::SimRecord;
use super::patch::suspended_by;
use super::{Ctx, RuleError, json_object};

/// An attribute body that passed the shape rules.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct AttributeBody {
    pub(crate) name: Option<String>,
    pub(crate) value: Option<String>,
}

/// Shape rules for attribute bodies; `create` requires both fields, a patch at least one.
pub(crate) fn parse_attribute_body(body: &[u8], create: bool) -> Result<AttributeBody, RuleError> {
    let obj = json_object(body)?;
    let mut b = AttributeBody::default();
    for (k, v) in &obj {
        match (k.as_str(), v) {
            ("name", Value::String(s)) => b.name = Some(s.clone()),
            ("value", Value::String(s)) => b.value = Some(s.clone()),
            ("name" | "value", _) => return Err(RuleError::field(k, "must be a string")),
            _ => return Err(RuleError::field(k, "unknown field")),
        }
    }
    if create {
        for (field, v) in [("name", &b.name), ("value", &b.value)] {
            if v.is_none() {
                return Err(RuleError::field(field, "required"));
            }
        }
    } else if obj.is_empty() {
        return Err(RuleError::new(
            codes::EMPTY_BODY,
            "The request changes nothing",
            json!({}),
        ));
    }
    if b.name.as_ref().is_some_and(|n| n.trim().is_empty()) {
        return Err(RuleError::new(
            codes::EMPTY_NAME,
            "Attribute name is empty",
            json!({}),
        ));
    }
    if b.name.as_ref().is_some_and(|n| n.chars().count() > 64) {
        return Err(RuleError::new(
            codes::FIELD_REJECTED,
            "Field rejected",
            json!({"field": "name", "maxLength": 64}),
        ));
    }
    if b.value.as_ref().is_some_and(|v| v.chars().count() > 255) {
        return Err(RuleError::new(
            codes::FIELD_REJECTED,
            "Field rejected",
            json!({"field": "value", "maxLength": 255}),
        ));
    }
    Ok(b)
}

/// The suspension rule for attribute writes.
pub(crate) fn check_attribute_write(rec: &SimRecord, ctx: &Ctx<'_>) -> Result<(), RuleError> {
    if rec.sim.is_suspended() && !ctx.attribute_writes_on_suspended {
        return Err(RuleError::new(
            codes::SUSPENDED,
            "The SIM is suspended; attributes cannot be changed",
            json!({"iccId": rec.sim.icc_id, "suspendedBy": suspended_by(rec)}),
        ));
    }
    Ok(())
}

fn duplicate(a: &Attribute) -> RuleError {
    RuleError::new(
        codes::DUPLICATE_ATTRIBUTE,
        "The SIM already has an attribute with this name",
        json!({"name": a.name, "iccAttributeId": a.icc_attribute_id}),
    )
}

/// `POST …/attribute`: creates the attribute unless the name is taken.
pub(crate) fn create_attribute(
    rec: &mut SimRecord,
    b: AttributeBody,
    ctx: &Ctx<'_>,
) -> Result<Attribute, RuleError> {
    check_attribute_write(rec, ctx)?;
    let name = b.name.unwrap_or_default();
    if let Some(a) = rec.attributes.iter().find(|a| a.name == name) {
        return Err(duplicate(a));
    }
    let a = Attribute {
        icc_attribute_id: ctx.world.allocate_attribute_id(),
        icc_id: rec.sim.icc_id.clone(),
        name,
        value: b.value.unwrap_or_default(),
        created_date: Some(ctx.now_text.into()),
        modified_date: Some(ctx.now_text.into()),
    };
    rec.attributes.push(a.clone());
    Ok(a)
}

/// `PATCH …/attribute/{id}`: renames and/or sets the value; returns the old and new attribute.
pub(crate) fn update_attribute(
    rec: &mut SimRecord,
    id: i64,
    b: AttributeBody,
    ctx: &Ctx<'_>,
) -> Result<(Attribute, Attribute), RuleError> {
    let idx = find_attribute(rec, id)?;
    check_attribute_write(rec, ctx)?;
    if let Some(n) = &b.name
        && let Some(other) = rec
            .attributes
            .iter()
            .find(|a| a.name == *n && a.icc_attribute_id != id)
    {
        return Err(duplicate(other));
    }
    let old = rec.attributes[idx].clone();
    let a = &mut rec.attributes[idx];
    let mut changed = false;
    if let Some(n) = b.name
        && n != a.name
    {
        a.name = n;
        changed = true;
    }
    if let Some(v) = b.value
        && v != a.value
    {
        a.value = v;
        changed = true;
    }
    if changed {
        a.modified_date = Some(ctx.now_text.into());
    }
    Ok((old, a.clone()))
}

/// `DELETE …/attribute/{id}`: removes it and returns it as it was.
pub(crate) fn delete_attribute(
    rec: &mut SimRecord,
    id: i64,
    ctx: &Ctx<'_>,
) -> Result<Attribute, RuleError> {
    let idx = find_attribute(rec, id)?;
    check_attribute_write(rec, ctx)?;
    Ok(rec.attributes.remove(idx))
}

/// The index of attribute `id` on this SIM, or 404 / 6002.
pub(crate) fn find_attribute(rec: &SimRecord, id: i64) -> Result<usize, RuleError> {
    rec.attributes
        .iter()
        .position(|a| a.icc_attribute_id == id)
        .ok_or_else(|| {
            RuleError::new(
                codes::NOT_FOUND,
                "No such attribute",
                json!({"iccId": rec.sim.icc_id, "iccAttributeId": id}),
            )
        })
}
