//! Verifier findings: what is wrong with one field of one structure.

use std::fmt;

/// One problem a verifier found: the structure, the field, what the field
/// should have been and what it was.
///
/// Verifiers return every problem they find, so a caller can report all of
/// them; `Display` renders e.g.
/// `AGF 2 field freeblks: expected <= 16384, got 99999`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The structure and its location, e.g. `AGF 2` or `inode 131`.
    pub structure: String,
    /// The field, named as xfs_db names it (`freeblks`, `levels[bno]`, `crc`).
    pub field: String,
    /// What a consistent filesystem would hold (a value or a rule).
    pub expected: String,
    /// What the field holds.
    pub actual: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} field {}: expected {}, got {}",
            self.structure, self.field, self.expected, self.actual
        )
    }
}

/// A decoded structure together with the problems its verifier found.
///
/// A structure with problems is still returned decoded, because a checker
/// wants to report every problem and a repairer wants the salvageable
/// fields; [`Checked::into_verified`] turns problems into an error for
/// callers that need a sound structure.
#[derive(Debug, Clone)]
pub struct Checked<T> {
    /// The decoded value.
    pub value: T,
    /// Everything the verifier found wrong; empty when the structure is sound.
    pub problems: Vec<Problem>,
}

impl<T> Checked<T> {
    /// True if the verifier found nothing wrong.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }

    /// The value if it verified, else the problems.
    pub fn into_verified(self) -> Result<T, Vec<Problem>> {
        if self.problems.is_empty() {
            Ok(self.value)
        } else {
            Err(self.problems)
        }
    }
}

/// Collects problems for one structure.
#[derive(Debug)]
pub(crate) struct Checker {
    structure: String,
    problems: Vec<Problem>,
}

impl Checker {
    /// Starts collecting problems for `structure` (e.g. `AGF 2`).
    pub(crate) fn new(structure: impl Into<String>) -> Self {
        Checker {
            structure: structure.into(),
            problems: Vec::new(),
        }
    }

    /// Records a problem unless `ok`. The arguments are only formatted when
    /// the check fails, so passing `format_args!` costs nothing on success.
    pub(crate) fn expect(
        &mut self,
        ok: bool,
        field: &str,
        expected: impl fmt::Display,
        actual: impl fmt::Display,
    ) {
        if !ok {
            self.push(field, expected, actual);
        }
    }

    /// Records a problem.
    pub(crate) fn push(
        &mut self,
        field: &str,
        expected: impl fmt::Display,
        actual: impl fmt::Display,
    ) {
        self.problems.push(Problem {
            structure: self.structure.clone(),
            field: field.to_owned(),
            expected: expected.to_string(),
            actual: actual.to_string(),
        });
    }

    /// Checks `field == expected`.
    pub(crate) fn equal<V: PartialEq + fmt::Display>(
        &mut self,
        field: &str,
        expected: V,
        actual: V,
    ) {
        if expected != actual {
            self.push(field, expected, actual);
        }
    }

    /// The problems found so far.
    pub(crate) fn finish(self) -> Vec<Problem> {
        self.problems
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects, clippy::as_conversions)]
mod tests {
    use super::*;

    #[test]
    fn display_says_where_and_what() {
        let mut c = Checker::new("AGF 2");
        c.expect(false, "freeblks", format_args!("<= {}", 16384), 99999);
        c.expect(true, "longest", "x", "y");
        c.equal("seqno", 2, 3);
        let p = c.finish();
        assert_eq!(p.len(), 2);
        assert_eq!(
            p[0].to_string(),
            "AGF 2 field freeblks: expected <= 16384, got 99999"
        );
        assert_eq!(p[1].to_string(), "AGF 2 field seqno: expected 2, got 3");
    }
}
