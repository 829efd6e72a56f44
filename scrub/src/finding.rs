//! Findings: what a scrubber says about the structure it checked.
//!
//! A finding is data, not an error: a corrupt record is reported and the
//! scrub goes on. Each finding says what kind of problem it is, which
//! structure and where (group, block, inode, byte offset, record, path),
//! which field, what was expected and what was found, in words for people
//! and with a stable code for programs.

use serde::Serialize;
use std::borrow::Cow;
use std::fmt;

/// How bad a finding is, in the vocabulary of the scrub interface.
///
/// The order is from most to least severe; reports sort by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FindingKind {
    /// The structure is damaged and needs repair.
    Corrupt,
    /// The structure disagrees with other metadata that describes the same
    /// thing (cross-referencing found a contradiction).
    XrefCorrupt,
    /// The structure could not be cross-referenced because the other
    /// metadata could not be read or is itself damaged.
    XrefFailed,
    /// The check could not finish (staging space ran out, the run was
    /// cancelled, a dependency was unusable); absence of other findings
    /// proves nothing.
    Incomplete,
    /// Not damage, but could be better (for example summary counters that
    /// are only approximate); a repair may optimise it.
    Preen,
    /// Looked odd but is not corruption.
    Warning,
}

impl FindingKind {
    /// The kind's name in reports and in the JSON wire format.
    pub fn as_str(self) -> &'static str {
        match self {
            FindingKind::Corrupt => "corrupt",
            FindingKind::XrefCorrupt => "xref-corrupt",
            FindingKind::XrefFailed => "xref-failed",
            FindingKind::Incomplete => "incomplete",
            FindingKind::Preen => "preen",
            FindingKind::Warning => "warning",
        }
    }

    /// Whether this kind means the structure needs repair.
    pub fn is_damage(self) -> bool {
        matches!(self, FindingKind::Corrupt | FindingKind::XrefCorrupt)
    }
}

impl fmt::Display for FindingKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a finding is. Every part is optional; set what is known.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Location {
    /// The allocation group (or other unit of parallelism) concerned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<u64>,
    /// A block number: group-relative for group structures, filesystem-wide
    /// otherwise (the structure's documentation says which).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub block: Option<u64>,
    /// An inode number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inode: Option<u64>,
    /// A byte offset: within a file for file data and mappings, within the
    /// block otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// The index of a record or entry within its block or structure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record: Option<u64>,
    /// A path name, where one is known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

impl Location {
    /// Whether nothing is set.
    pub fn is_empty(&self) -> bool {
        *self == Location::default()
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<String> = Vec::new();
        if let Some(p) = &self.path {
            parts.push(p.clone());
        }
        if let Some(i) = self.inode {
            parts.push(format!("inode {i}"));
        }
        if let Some(g) = self.group {
            parts.push(format!("group {g}"));
        }
        if let Some(b) = self.block {
            parts.push(format!("block {b}"));
        }
        if let Some(r) = self.record {
            parts.push(format!("record {r}"));
        }
        if let Some(o) = self.offset {
            parts.push(format!("offset {o}"));
        }
        f.write_str(&parts.join(" "))
    }
}

/// One problem (or remark) about one structure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// How bad it is.
    pub kind: FindingKind,
    /// A stable machine-readable code, `structure.problem`, e.g.
    /// `agf.freeblks` or `bnobt.key-order`. Codes never change meaning.
    pub code: Cow<'static, str>,
    /// The structure checked (the scrubber's name, e.g. `agf`, `bnobt`).
    pub structure: Cow<'static, str>,
    /// Where.
    pub location: Location,
    /// The field concerned, if one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<Cow<'static, str>>,
    /// What the field should hold.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected: Option<String>,
    /// What it holds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actual: Option<String>,
    /// A sentence for people.
    pub message: String,
}

impl Finding {
    /// A finding of `kind` about `structure` with code `code`.
    pub fn new(
        kind: FindingKind,
        structure: impl Into<Cow<'static, str>>,
        code: impl Into<Cow<'static, str>>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            kind,
            code: code.into(),
            structure: structure.into(),
            location: Location::default(),
            field: None,
            expected: None,
            actual: None,
            message: message.into(),
        }
    }

    /// Sets the group.
    pub fn group(mut self, g: u64) -> Self {
        self.location.group = Some(g);
        self
    }

    /// Sets the block.
    pub fn block(mut self, b: u64) -> Self {
        self.location.block = Some(b);
        self
    }

    /// Sets the inode.
    pub fn inode(mut self, i: u64) -> Self {
        self.location.inode = Some(i);
        self
    }

    /// Sets the byte offset.
    pub fn offset(mut self, o: u64) -> Self {
        self.location.offset = Some(o);
        self
    }

    /// Sets the record index.
    pub fn record(mut self, r: u64) -> Self {
        self.location.record = Some(r);
        self
    }

    /// Sets the path.
    pub fn path(mut self, p: impl Into<String>) -> Self {
        self.location.path = Some(p.into());
        self
    }

    /// Sets the whole location.
    pub fn at(mut self, location: Location) -> Self {
        self.location = location;
        self
    }

    /// Names the field, with the expected and the actual value.
    pub fn field(
        mut self,
        field: impl Into<Cow<'static, str>>,
        expected: impl fmt::Display,
        actual: impl fmt::Display,
    ) -> Self {
        self.field = Some(field.into());
        self.expected = Some(expected.to_string());
        self.actual = Some(actual.to_string());
        self
    }

    /// Names the field only.
    pub fn field_name(mut self, field: impl Into<Cow<'static, str>>) -> Self {
        self.field = Some(field.into());
        self
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind, self.structure)?;
        if !self.location.is_empty() {
            write!(f, " {}", self.location)?;
        }
        write!(f, ": {}", self.message)?;
        match (&self.field, &self.expected, &self.actual) {
            (Some(field), Some(e), Some(a)) => write!(f, " ({field}: expected {e}, found {a})"),
            (Some(field), _, _) => write!(f, " ({field})"),
            _ => Ok(()),
        }
    }
}

/// Where a scrubber puts its findings.
///
/// Each scrub item gets its own sink, so findings of one item stay in the
/// order the scrubber emitted them and reports are deterministic however
/// items were scheduled.
#[derive(Debug, Default, Clone)]
pub struct Findings {
    list: Vec<Finding>,
}

impl Findings {
    /// An empty sink.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a finding.
    pub fn push(&mut self, f: Finding) {
        self.list.push(f);
    }

    /// The findings so far.
    pub fn as_slice(&self) -> &[Finding] {
        &self.list
    }

    /// Number of findings.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The most severe kind present.
    pub fn worst(&self) -> Option<FindingKind> {
        self.list.iter().map(|f| f.kind).min()
    }

    /// Takes the findings out.
    pub fn into_vec(self) -> Vec<Finding> {
        self.list
    }
}

impl Extend<Finding> for Findings {
    fn extend<I: IntoIterator<Item = Finding>>(&mut self, iter: I) {
        self.list.extend(iter);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_where_what_and_values() {
        let f = Finding::new(
            FindingKind::Corrupt,
            "bnobt",
            "bnobt.startblock",
            "record beyond the end of the AG",
        )
        .group(2)
        .block(17)
        .record(4)
        .field("startblock", "< 8192", 9001);
        assert_eq!(
            f.to_string(),
            "corrupt bnobt group 2 block 17 record 4: record beyond the end of the AG (startblock: expected < 8192, found 9001)"
        );
    }

    #[test]
    fn worst_is_most_severe() {
        let mut s = Findings::new();
        assert_eq!(s.worst(), None);
        s.push(Finding::new(
            FindingKind::Preen,
            "sb",
            "sb.icount",
            "approximate",
        ));
        s.push(Finding::new(
            FindingKind::XrefCorrupt,
            "agf",
            "agf.freeblks",
            "disagrees",
        ));
        s.push(Finding::new(FindingKind::Warning, "sb", "sb.x", "odd"));
        assert_eq!(s.worst(), Some(FindingKind::XrefCorrupt));
        assert!(FindingKind::XrefCorrupt.is_damage());
        assert!(!FindingKind::Preen.is_damage());
    }

    #[test]
    fn serializes_stable_names_and_skips_unset_fields() {
        let f = Finding::new(
            FindingKind::XrefFailed,
            "rmapbt",
            "rmapbt.xref",
            "could not read",
        )
        .group(1);
        let j = serde_json::to_string(&f).unwrap();
        assert_eq!(
            j,
            r#"{"kind":"xref-failed","code":"rmapbt.xref","structure":"rmapbt","location":{"group":1},"message":"could not read"}"#
        );
    }
}
