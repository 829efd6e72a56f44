//! Health state of each checked structure.

use crate::finding::{Finding, FindingKind};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Mutex;

/// What is known about one structure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Health {
    /// Not checked (or the check was incomplete).
    Unchecked,
    /// Checked and found sound.
    Ok,
    /// Checked and found damaged.
    Sick,
    /// Damaged, then repaired and re-checked sound.
    Repaired,
}

impl Health {
    /// The health a finished check establishes from its findings: damage
    /// makes a structure sick; a check that could not finish proves nothing.
    pub fn from_findings(findings: &[Finding]) -> Health {
        if findings.iter().any(|f| f.kind.is_damage()) {
            Health::Sick
        } else if findings.iter().any(|f| f.kind == FindingKind::Incomplete) {
            Health::Unchecked
        } else {
            Health::Ok
        }
    }

    /// The name used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Unchecked => "unchecked",
            Health::Ok => "ok",
            Health::Sick => "sick",
            Health::Repaired => "repaired",
        }
    }
}

/// Health of every structure of one run, shared between scrubbers so that a
/// scrubber can see whether what it depends on was found sound.
#[derive(Debug, Default)]
pub struct HealthMap {
    map: Mutex<BTreeMap<(String, Option<u64>), Health>>,
}

impl HealthMap {
    /// The health of `structure` (in `group`, for group structures).
    pub fn get(&self, structure: &str, group: Option<u64>) -> Health {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(structure.to_string(), group))
            .copied()
            .unwrap_or(Health::Unchecked)
    }

    /// Records the health of `structure` (in `group`).
    pub fn set(&self, structure: &str, group: Option<u64>, health: Health) {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((structure.to_string(), group), health);
    }

    /// Every recorded state, in order.
    pub fn snapshot(&self) -> Vec<((String, Option<u64>), Health)> {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    }
}
