//! The orchestrator over a toy target: dependency order, parallelism,
//! deterministic reports, health, cancellation and failures.

use scrub::{
    Applicability, CancelToken, Finding, FindingKind, Findings, Health, ItemId, ItemStatus,
    Registry, RunOptions, Scope, ScrubContext, ScrubError, ScrubTarget, Scrubber, run,
};
use std::sync::Mutex;
use std::time::Duration;
use xfile::MemoryBudget;

/// A target with groups whose "damage" is listed up front, and a log of the
/// order in which items ran.
struct Toy {
    groups: u64,
    damaged: Vec<(&'static str, u64)>,
    log: Mutex<Vec<String>>,
    has_optional: bool,
}

impl ScrubTarget for Toy {
    fn group_count(&self) -> u64 {
        self.groups
    }
}

struct Check {
    name: &'static str,
    scope: Scope,
    deps: &'static [&'static str],
    /// Sleep a little, so that a wrong schedule would show in the log.
    slow: bool,
}

impl Scrubber<Toy> for Check {
    fn name(&self) -> &'static str {
        self.name
    }
    fn scope(&self) -> Scope {
        self.scope
    }
    fn depends_on(&self) -> &'static [&'static str] {
        self.deps
    }
    fn applies(&self, t: &Toy) -> Applicability {
        match self.name {
            "optional" if !t.has_optional => Applicability::Absent("target made without it".into()),
            "needs-feature" => Applicability::Impossible("target lacks the feature".into()),
            _ => Applicability::Applies,
        }
    }
    fn scrub(
        &self,
        t: &Toy,
        item: &ItemId,
        _ctx: &ScrubContext,
        out: &mut Findings,
    ) -> Result<(), ScrubError> {
        if self.slow {
            std::thread::sleep(Duration::from_millis(5));
        }
        t.log.lock().unwrap().push(item.to_string());
        let g = item.group.unwrap_or(0);
        if t.damaged.contains(&(self.name, g)) {
            out.push(
                Finding::new(
                    FindingKind::Corrupt,
                    self.name,
                    format!("{}.bad", self.name),
                    "damaged",
                )
                .group(g),
            );
            out.push(
                Finding::new(
                    FindingKind::Preen,
                    self.name,
                    format!("{}.meh", self.name),
                    "could be better",
                )
                .group(g),
            );
        }
        match self.name {
            "io-fails" => Err(ScrubError::operational(std::io::Error::other(
                "read failed",
            ))),
            "panics" => panic!("a bug in a scrubber"),
            _ => Ok(()),
        }
    }
}

fn registry(extra: bool) -> Registry<Toy> {
    let mut r = Registry::new();
    let c = |name, scope, deps, slow| {
        Box::new(Check {
            name,
            scope,
            deps,
            slow,
        })
    };
    r.register(c("header", Scope::Group, &[], true)).unwrap();
    r.register(c("tree", Scope::Group, &["header"], false))
        .unwrap();
    r.register(c("optional", Scope::Group, &["header"], false))
        .unwrap();
    r.register(c("counters", Scope::Whole, &["header", "tree"], false))
        .unwrap();
    if extra {
        r.register(c("needs-feature", Scope::Whole, &[], false))
            .unwrap();
        r.register(c("io-fails", Scope::Whole, &[], false)).unwrap();
        r.register(c("panics", Scope::Group, &[], false)).unwrap();
    }
    r
}

fn toy(damaged: Vec<(&'static str, u64)>) -> Toy {
    Toy {
        groups: 6,
        damaged,
        log: Mutex::new(Vec::new()),
        has_optional: false,
    }
}

fn ctx() -> ScrubContext {
    ScrubContext::new(MemoryBudget::new(1 << 20))
}

#[test]
fn dependencies_run_first_and_report_order_is_fixed() {
    for threads in [1, 2, 8] {
        let t = toy(vec![("tree", 3), ("header", 1)]);
        let opts = RunOptions {
            threads: Some(threads),
            ..RunOptions::default()
        };
        let report = run(&t, &registry(false), &ctx(), &opts).unwrap();
        // Report order: registry order, then group.
        let order: Vec<String> = report.items.iter().map(|i| i.item.to_string()).collect();
        let mut want: Vec<String> = Vec::new();
        for s in ["header", "tree", "optional"] {
            want.extend((0..6).map(|g| format!("{s} (group {g})")));
        }
        want.push("counters".into());
        assert_eq!(order, want);
        // Execution order: every header before the tree of its group, and
        // counters after everything it depends on.
        let log = t.log.lock().unwrap().clone();
        let pos = |s: &str| log.iter().position(|x| x == s).unwrap();
        for g in 0..6 {
            assert!(pos(&format!("header (group {g})")) < pos(&format!("tree (group {g})")));
        }
        assert_eq!(log.last().unwrap(), "counters");
        // Findings in place, health per item.
        let f: Vec<(String, String)> = report
            .findings()
            .map(|(i, f)| (i.to_string(), f.code.to_string()))
            .collect();
        assert_eq!(
            f,
            [
                ("header (group 1)".into(), "header.bad".into()),
                ("header (group 1)".into(), "header.meh".into()),
                ("tree (group 3)".into(), "tree.bad".into()),
                ("tree (group 3)".into(), "tree.meh".into()),
            ]
        );
        let health = |s: &str| {
            report
                .items
                .iter()
                .find(|i| i.item.to_string() == s)
                .unwrap()
                .health
        };
        assert_eq!(health("tree (group 3)"), Health::Sick);
        assert_eq!(health("tree (group 2)"), Health::Ok);
        assert!(report.has_damage());
        assert_eq!(report.counts()[&FindingKind::Corrupt], 2);
        // The optional structure is absent: no findings, a reason.
        let opt = report
            .items
            .iter()
            .find(|i| i.item.scrubber == "optional")
            .unwrap();
        assert!(matches!(&opt.status, ItemStatus::Absent { reason } if reason.contains("without")));
        assert!(opt.findings.is_empty());
    }
}

#[test]
fn only_selects_and_unknown_names_are_refused() {
    let t = toy(vec![]);
    let opts = RunOptions {
        only: Some(vec!["tree".into()]),
        threads: Some(2),
    };
    let report = run(&t, &registry(false), &ctx(), &opts).unwrap();
    assert!(report.items.iter().all(|i| i.item.scrubber == "tree"));
    assert_eq!(report.items.len(), 6);
    let bad = RunOptions {
        only: Some(vec!["nope".into()]),
        threads: None,
    };
    let e = run(&t, &registry(false), &ctx(), &bad).unwrap_err();
    assert!(
        e.to_string().contains("nope") && e.to_string().contains("header,tree"),
        "{e}"
    );
}

#[test]
fn impossible_checks_warn_and_failures_are_incomplete() {
    let t = toy(vec![]);
    let report = run(&t, &registry(true), &ctx(), &RunOptions::default()).unwrap();
    let nf = report
        .items
        .iter()
        .find(|i| i.item.scrubber == "needs-feature")
        .unwrap();
    assert_eq!(nf.findings.len(), 1);
    assert_eq!(nf.findings[0].kind, FindingKind::Warning);
    assert!(nf.findings[0].message.contains("lacks the feature"));
    let io = report
        .items
        .iter()
        .find(|i| i.item.scrubber == "io-fails")
        .unwrap();
    assert!(matches!(
        io.status,
        ItemStatus::Failed {
            operational: true,
            ..
        }
    ));
    assert_eq!(io.findings[0].kind, FindingKind::Incomplete);
    assert_eq!(io.health, Health::Unchecked);
    assert!(report.has_operational_error());
    assert!(!report.has_damage());
    // A bug in one scrubber fails its items, not the run.
    let panicked: Vec<_> = report
        .items
        .iter()
        .filter(|i| i.item.scrubber == "panics")
        .collect();
    assert_eq!(panicked.len(), 6);
    for p in panicked {
        assert!(
            matches!(&p.status, ItemStatus::Failed { error, operational: true } if error.contains("a bug in a scrubber")),
            "{:?}",
            p.status
        );
    }
    assert!(
        report
            .items
            .iter()
            .any(|i| i.item.scrubber == "counters" && i.status == ItemStatus::Done)
    );
}

#[test]
fn cancellation_stops_the_run() {
    let t = toy(vec![]);
    let token = CancelToken::new();
    token.cancel();
    let report = run(
        &t,
        &registry(false),
        &ctx().with_cancel(token),
        &RunOptions::default(),
    )
    .unwrap();
    assert!(report.cancelled);
    assert!(
        report
            .items
            .iter()
            .all(|i| i.status == ItemStatus::Cancelled)
    );
    assert!(t.log.lock().unwrap().is_empty());
}

#[test]
fn registry_rejects_bad_dependencies() {
    let mut r: Registry<Toy> = Registry::new();
    let e = r.register(Box::new(Check {
        name: "a",
        scope: Scope::Whole,
        deps: &["b"],
        slow: false,
    }));
    assert!(matches!(e, Err(ScrubError::UnknownDependency { .. })));
    let e = r.register(Box::new(Check {
        name: "a",
        scope: Scope::Whole,
        deps: &["a"],
        slow: false,
    }));
    assert!(matches!(e, Err(ScrubError::DependencyCycle("a"))));
    r.register(Box::new(Check {
        name: "a",
        scope: Scope::Whole,
        deps: &[],
        slow: false,
    }))
    .unwrap();
    let e = r.register(Box::new(Check {
        name: "a",
        scope: Scope::Whole,
        deps: &[],
        slow: false,
    }));
    assert!(matches!(e, Err(ScrubError::DuplicateName("a"))));
}
