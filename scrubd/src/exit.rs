//! Exit codes: the one place that maps outcomes and errors to them.
//!
//! They follow fsck(8) and combine as a bit mask: a check that found
//! damage and was then cancelled exits with `4 | 32 = 36`.

use std::error::Error as StdError;

/// No damage found. Preen suggestions and warnings alone exit with 0.
pub const NO_DAMAGE: u8 = 0;
/// Damage found: a `corrupt` or `xref-corrupt` finding.
pub const DAMAGE: u8 = 4;
/// Operational error: the image could not be read or is unsupported, or a
/// check stopped for an operational reason (I/O error, internal error).
pub const OPERATIONAL: u8 = 8;
/// Usage error: bad flags or arguments.
pub const USAGE: u8 = 16;
/// Cancelled by the user (Ctrl-C).
pub const CANCELLED: u8 = 32;

/// Boxed error for the command layer.
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// Why a command could not do its work. Damage found is not an error.
#[derive(Debug)]
pub enum CliError {
    /// The command line asks for something impossible (exit 16).
    Usage(String),
    /// The command could not be carried out (exit 8).
    Operational(BoxError),
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CliError::Usage(m) => f.write_str(m),
            CliError::Operational(e) => f.write_str(&render_chain(e.as_ref())),
        }
    }
}

impl<E: StdError + Send + Sync + 'static> From<E> for CliError {
    fn from(e: E) -> Self {
        CliError::Operational(Box::new(e))
    }
}

/// What a finished (or cancelled) command found, as far as the exit code
/// is concerned.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Some structure is damaged.
    pub damage: bool,
    /// Some check stopped for an operational reason.
    pub operational: bool,
    /// The user cancelled the run before every check finished.
    pub cancelled: bool,
}

/// The exit code of a command that ran to its end (or was cancelled).
pub fn for_outcome(o: Outcome) -> u8 {
    let mut code = NO_DAMAGE;
    if o.damage {
        code |= DAMAGE;
    }
    if o.operational {
        code |= OPERATIONAL;
    }
    if o.cancelled {
        code |= CANCELLED;
    }
    code
}

/// The exit code of a command that could not run.
pub fn for_error(e: &CliError) -> u8 {
    match e {
        CliError::Usage(_) => USAGE,
        CliError::Operational(_) => OPERATIONAL,
    }
}

/// The exit code for an argument-parsing result that did not produce a
/// command: help and version requests exit 0, every other clap error is a
/// usage error (clap's own default, 2, is not an fsck code).
pub fn for_clap(e: &clap::Error) -> u8 {
    if e.use_stderr() { USAGE } else { NO_DAMAGE }
}

/// Renders an error and its causes on one line, `outer: cause: cause`,
/// skipping a cause whose text the previous one already ends with.
pub fn render_chain(e: &(dyn StdError + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let msg = c.to_string();
        if !s.ends_with(&msg) {
            s.push_str(": ");
            s.push_str(&msg);
        }
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_combine() {
        assert_eq!(for_outcome(Outcome::default()), 0);
        let o = Outcome {
            damage: true,
            ..Outcome::default()
        };
        assert_eq!(for_outcome(o), 4);
        let o = Outcome {
            damage: true,
            operational: true,
            cancelled: true,
        };
        assert_eq!(for_outcome(o), 4 | 8 | 32);
        assert_eq!(for_error(&CliError::Usage("x".into())), 16);
        let io = std::io::Error::other("disk on fire");
        assert_eq!(for_error(&CliError::from(io)), 8);
    }

    #[test]
    fn chain_is_one_line_without_repeats() {
        #[derive(Debug)]
        struct Outer(std::io::Error);
        impl std::fmt::Display for Outer {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("cannot open x")
            }
        }
        impl StdError for Outer {
            fn source(&self) -> Option<&(dyn StdError + 'static)> {
                Some(&self.0)
            }
        }
        let e = Outer(std::io::Error::other("no such file"));
        assert_eq!(render_chain(&e), "cannot open x: no such file");
        let e = std::io::Error::other("plain");
        assert_eq!(render_chain(&e), "plain");
    }
}
