//! Seed data: `--sims N` SIMs generated from `--seed`, spread so that every business rule can
//! fire on them (available, active, customer-, admin- and system-suspended SIMs; SIMs of two
//! operators in two portfolios of one tenant and in a second tenant; some with attributes).
//!
//! Guarantees: the same seed and index always give the same SIM, so tests, samples and
//! benchmarks can name SIMs without asking the simulator.

use crate::model::{Attribute, Sim};

use super::state::{MNO_UK, MNO_US, SimRecord};

/// The seeded SIMs' `modifiedDate` and attribute dates.
const SEED_DATE: &str = "2025-03-04T09:00:00Z";

/// First attribute id of a seeded world.
pub(crate) const FIRST_ATTRIBUTE_ID: i64 = 90_001;

/// `body` with its Luhn check digit appended. The simulator has its own: it shares nothing
/// with the client but the contract's types.
fn with_check_digit(body: &str) -> String {
    let sum: u32 = body
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            match (i % 2 == 0, d * 2) {
                (true, dd) if dd > 9 => dd - 9,
                (true, dd) => dd,
                (false, _) => d,
            }
        })
        .sum();
    format!("{body}{}", (10 - sum % 10) % 10)
}

/// The ICCID of SIM number `i` of `seed`: 19 digits (`89445…`) or, every fifth, 20 (`89310…`).
pub fn iccid(seed: u64, i: usize) -> String {
    let tag = seed % 1000;
    if i % 5 == 4 {
        with_check_digit(&format!("89310{tag:03}{i:011}"))
    } else {
        with_check_digit(&format!("89445{tag:03}{i:010}"))
    }
}

/// The seeded SIM's profile, for tests and samples that need a SIM of a certain kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// Available (never activated).
    Available,
    /// Active, not suspended.
    Active,
    /// Active and suspended by the customer.
    CustomerSuspended,
    /// Active and suspended by the provider's administration.
    AdminSuspended,
    /// Active and suspended by the provider's systems.
    SystemSuspended,
}

fn mix(seed: u64, i: usize) -> u64 {
    // splitmix64: cheap, well distributed, and stable across versions (unlike a library RNG).
    let mut z = seed
        .wrapping_add((i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Generates SIM `i` and its attributes; `next_id` hands out attribute ids.
pub(crate) fn sim(seed: u64, i: usize, next_id: &mut i64) -> (SimRecord, Profile) {
    let r = mix(seed, i);
    let roll = |shift: u32| ((r >> shift) % 100) as u8;
    let icc_id = iccid(seed, i);
    let (portfolio, mno, package) = match roll(0) {
        0..60 => (
            "pf-acme-eu",
            MNO_UK,
            if roll(8) < 70 { 20417 } else { 20418 },
        ),
        60..75 => ("pf-acme-us", MNO_US, 31001),
        75..90 => ("pf-acme-us", MNO_UK, 31002),
        _ => ("pf-other-co", MNO_UK, 40001),
    };
    let profile = match roll(16) {
        0..45 => Profile::Available,
        45..80 => Profile::Active,
        80..90 => Profile::CustomerSuspended,
        90..95 => Profile::AdminSuspended,
        _ => Profile::SystemSuspended,
    };
    let active = profile != Profile::Available;
    let sim = Sim {
        icc_id: icc_id.clone(),
        sim_id: Some(format!("5{:07}", i % 10_000_000)),
        eid: None,
        status: if active { "active" } else { "available" }.into(),
        customer_suspend: profile == Profile::CustomerSuspended,
        admin_suspend: profile == Profile::AdminSuspended,
        system_suspend: profile == Profile::SystemSuspended,
        package_id: package,
        portfolio_id: portfolio.into(),
        mno_id: mno,
        imsi: Some(format!("{mno}{:09}", i % 1_000_000_000)),
        msisdn: active.then(|| format!("44770{:07}", i % 10_000_000)),
        modified_date: Some(SEED_DATE.into()),
    };
    let mut attributes = Vec::new();
    let mut add = |name: &str, value: String| {
        attributes.push(Attribute {
            icc_attribute_id: *next_id,
            icc_id: icc_id.clone(),
            name: name.into(),
            value,
            created_date: Some(SEED_DATE.into()),
            modified_date: Some(SEED_DATE.into()),
        });
        *next_id += 1;
    };
    if roll(24) < 40 {
        add("friendlyName", format!("device-{i}"));
    }
    if roll(32) < 15 {
        add("orderId", format!("PO-2025-{:04}", i % 10_000));
    }
    (
        SimRecord {
            sim,
            attributes,
            active_at: None,
            settle_until: None,
            history: Default::default(),
        },
        profile,
    )
}

/// All `n` seeded SIMs and the next free attribute id.
pub(crate) fn generate(seed: u64, n: usize) -> (Vec<SimRecord>, i64) {
    let mut next_id = FIRST_ATTRIBUTE_ID;
    let sims = (0..n).map(|i| sim(seed, i, &mut next_id).0).collect();
    (sims, next_id)
}

/// The indices and records of seeded SIMs, for picking test and sample subjects.
pub fn iter(seed: u64, n: usize) -> impl Iterator<Item = (usize, SimRecord, Profile)> {
    let mut next_id = FIRST_ATTRIBUTE_ID;
    (0..n).map(move |i| {
        let (rec, p) = sim(seed, i, &mut next_id);
        (i, rec, p)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn luhn_ok(s: &str) -> bool {
        s.len() > 1 && with_check_digit(&s[..s.len() - 1]) == s
    }

    #[test]
    fn iccids_are_valid_unique_and_of_both_lengths() {
        let ids: Vec<String> = (0..2000).map(|i| iccid(7, i)).collect();
        assert!(
            ids.iter()
                .all(|s| luhn_ok(s) && s.bytes().all(|b| b.is_ascii_digit()))
        );
        assert_eq!(
            with_check_digit("894450099000001234"),
            "8944500990000012342"
        );
        assert_eq!(ids.iter().collect::<HashSet<_>>().len(), ids.len());
        assert!(ids.iter().any(|s| s.len() == 19));
        assert!(ids.iter().any(|s| s.len() == 20));
    }

    #[test]
    fn a_thousand_sims_cover_every_profile_and_tenant() {
        let all: Vec<_> = iter(1, 1000).collect();
        for p in [
            Profile::Available,
            Profile::Active,
            Profile::CustomerSuspended,
            Profile::AdminSuspended,
            Profile::SystemSuspended,
        ] {
            assert!(all.iter().any(|(_, _, q)| *q == p), "{p:?}");
        }
        for pf in ["pf-acme-eu", "pf-acme-us", "pf-other-co"] {
            assert!(all.iter().any(|(_, r, _)| r.sim.portfolio_id == pf), "{pf}");
        }
        assert!(all.iter().any(|(_, r, _)| !r.attributes.is_empty()));
    }

    #[test]
    fn the_same_seed_gives_the_same_world() {
        let (a, _) = generate(3, 50);
        let (b, _) = generate(3, 50);
        assert_eq!(
            a.iter().map(|r| &r.sim).collect::<Vec<_>>(),
            b.iter().map(|r| &r.sim).collect::<Vec<_>>()
        );
    }
}
