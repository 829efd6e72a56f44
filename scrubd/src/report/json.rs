//! The JSON Lines wire format of `scrubd check --json`.
//!
//! `scrubd check --json IMAGE` writes one JSON object per line on stdout,
//! and nothing else. Every object has a `"type"`. A run writes, in order:
//!
//! 1. one `begin` record;
//! 2. the findings about the whole filesystem made before the scrubbers run
//!    (an unusable primary superblock, a dirty log, NEEDSREPAIR, no rmapbt);
//! 3. for each scrub item in report order (scrubbers in registry order, then
//!    AG order): its `finding` records in the order found, then an `item`
//!    record if the item did not simply run to its end;
//! 4. with `--stats`, one `stats` record;
//! 5. one `summary` record, always last.
//!
//! The report order does not depend on thread scheduling: two runs over the
//! same image print the same records (`elapsed_ms` aside).
//!
//! If the check cannot start at all (unreadable or unsupported image: exit
//! code 8; bad command line: 16), stdout stays empty and stderr holds one
//! line `scrubd: <error>`.
//!
//! # Records
//!
//! Optional fields are left out when unknown; they are never `null`.
//!
//! ## `begin`
//!
//! ```json
//! {"type":"begin","version":1,"tool":"scrubd","tool_version":"0.1.0",
//!  "image":"testdata/images/rmapbt.img.zst",
//!  "uuid":"5c2bd000-0000-4000-8000-000000000003","ags":4,"agblocks":4096,
//!  "blocksize":4096,"dblocks":16384,"inodesize":512,
//!  "features":["crc","ftype","finobt","sparse","rmapbt","reflink","bigtime","inobtcount"],
//!  "log":"clean","memory":67108864,"threads":2,
//!  "scrubbers":["sb","agf","agfl","agi","bnobt","cntbt","inobt","finobt","rmapbt","refcountbt","fscounters"],
//!  "items":41}
//! ```
//!
//! | field | type | meaning |
//! |---|---|---|
//! | `version` | integer | version of this wire format: 1 |
//! | `tool`, `tool_version` | string | `"scrubd"` and its version |
//! | `image` | string | the image as named on the command line |
//! | `uuid` | string, optional | filesystem UUID; left out if the primary superblock is unusable, like every geometry field below |
//! | `ags`, `agblocks` | integer, optional | number of AGs, blocks per AG |
//! | `blocksize`, `dblocks`, `inodesize` | integer, optional | block size in bytes, blocks in the data device, inode size in bytes |
//! | `features` | array of strings, optional | features that change what is checked, spelled as mkfs.xfs options |
//! | `log` | string, optional | `clean`, `dirty`, `zeroed` (nothing to replay) or `corrupt` |
//! | `memory` | integer | staging memory budget in bytes |
//! | `threads` | integer | worker threads |
//! | `scrubbers` | array of strings | the scrubbers selected (`--only`), in report order |
//! | `items` | integer | scrub items planned: one per AG for AG structures, one for whole-filesystem ones |
//!
//! ## `finding`
//!
//! ```json
//! {"type":"finding","kind":"corrupt","code":"bnobt.startblock","structure":"bnobt",
//!  "ag":1,"block":1,"record":83,"field":"startblock","expected":"< 4096",
//!  "actual":"2771097972","message":"record beyond the end of the AG"}
//! ```
//!
//! | field | type | meaning |
//! |---|---|---|
//! | `kind` | string | `corrupt`, `xref-corrupt`, `xref-failed`, `incomplete`, `preen` or `warning` (below) |
//! | `code` | string | stable code `structure.problem`, e.g. `agf.freeblks`, `log.dirty` |
//! | `structure` | string | the structure concerned (a scrubber name, or `log`) |
//! | `ag` | integer, optional | allocation group |
//! | `block` | integer, optional | block number: AG-relative when `ag` is present, a filesystem block number otherwise |
//! | `inode` | integer, optional | inode number |
//! | `offset` | integer, optional | byte offset: within the file for file data and mappings, within the block otherwise |
//! | `record` | integer, optional | index of the record or entry within its block |
//! | `path` | string, optional | a path name, where known |
//! | `field` | string, optional | the on-disk field, named as xfs_db names it |
//! | `expected`, `actual` | string, optional | what the field should hold (a value or a rule) and what it holds |
//! | `message` | string | a sentence for people |
//!
//! Kinds: `corrupt` — the structure is damaged; `xref-corrupt` — it
//! contradicts other metadata; `xref-failed` — it could not be compared
//! with other metadata (that metadata is unreadable or damaged);
//! `incomplete` — a check could not finish, so the absence of other
//! findings proves nothing; `preen` — not damage, could be better;
//! `warning` — worth knowing, not damage. Only `corrupt` and
//! `xref-corrupt` count as damage.
//!
//! Codes of whole-filesystem findings: `log.dirty`, `log.corrupt`,
//! `sb.needsrepair`, `sb.features` (unknown compatible feature bits),
//! `rmapbt.no-ownership-xref` (no reverse-mapping btree: block ownership
//! cannot be cross-referenced), `sb.<field>` and `sb.malformed` (primary
//! superblock damage), `sb.primary-unusable` (nothing else was checked).
//! The orchestrator adds `<scrubber>.incomplete` for an item that stopped
//! early and `<scrubber>.not-possible` for a check that cannot be done.
//!
//! ## `item`
//!
//! ```json
//! {"type":"item","scrubber":"finobt","ag":0,"status":"absent","reason":"the filesystem has no free inode btree"}
//! ```
//!
//! | field | type | meaning |
//! |---|---|---|
//! | `scrubber` | string | the scrubber |
//! | `ag` | integer, optional | the AG, for AG structures |
//! | `status` | string | `absent` (the structure does not exist on this filesystem), `impossible` (the check cannot be done; a `warning` finding says why), `failed` (stopped early; an `incomplete` finding says why) or `cancelled` (Ctrl-C) |
//! | `reason` | string, optional | why (absent, impossible, failed) |
//! | `operational` | boolean, optional | failed items only: the cause was operational (I/O, internal error) rather than staging space |
//!
//! Items that ran to their end have no `item` record.
//!
//! ## `stats`
//!
//! Written only with `--stats`: where the staging memory went.
//!
//! ```json
//! {"type":"stats","limit":16777216,"peak_resident_bytes":16777216,
//!  "structures":[{"name":"rmap-shadow-raw","instances":1,"records":0,
//!  "bytes_staged":5767168,"peak_resident_bytes":5767168,"bytes_spilled":0,
//!  "evictions":0,"page_ins":0}]}
//! ```
//!
//! | field | type | meaning |
//! |---|---|---|
//! | `limit` | integer | the staging memory budget in bytes (`--memory`) |
//! | `peak_resident_bytes` | integer | highest total staging memory held at once |
//! | `structures` | array | one object per staging structure name, in order of first use, summed over every structure of that name |
//! | `structures[].name` | string | the name, e.g. `rmap-shadow-raw`, `rmap-shadow-btree` |
//! | `structures[].instances` | integer | structures created under the name |
//! | `structures[].records` | integer | records they held (at the end of each one's life), as counted by their users |
//! | `structures[].bytes_staged` | integer | bytes written into them |
//! | `structures[].peak_resident_bytes` | integer | highest memory any one of them held |
//! | `structures[].bytes_spilled` | integer | bytes written to the backing file because the budget was full |
//! | `structures[].evictions` | integer | pages dropped from memory to make room |
//! | `structures[].page_ins` | integer | pages read back from the backing file |
//!
//! ## `summary`
//!
//! ```json
//! {"type":"summary","counts":{"corrupt":1,"xref-corrupt":0,"xref-failed":0,"incomplete":0,"preen":0,"warning":0},
//!  "problems":1,"damaged":true,"damaged_structures":["bnobt"],
//!  "items":{"total":41,"done":41,"absent":0,"impossible":0,"failed":0,"cancelled":0},
//!  "cancelled":false,"exit_code":4,"elapsed_ms":118}
//! ```
//!
//! | field | type | meaning |
//! |---|---|---|
//! | `counts` | object | number of findings of each kind; every kind is present |
//! | `problems` | integer | damage findings (`corrupt` + `xref-corrupt`) |
//! | `damaged` | boolean | `problems > 0` |
//! | `damaged_structures` | array of strings | structures with damage, in report order |
//! | `items` | object | items planned (`total`) and how they ended |
//! | `cancelled` | boolean | Ctrl-C stopped the run |
//! | `exit_code` | integer | the process's exit code (see below) |
//! | `elapsed_ms` | integer | wall time from opening the image to the end of the checks |
//!
//! Exit codes are bits, combined as fsck(8) combines them: 0 no damage
//! (warnings and preen findings alone give 0), 4 damage found, 8
//! operational error (including a check stopped by one), 16 usage error,
//! 32 cancelled.
//!
//! # Stability
//!
//! Within `version` 1, fields and record types are only ever added, never
//! removed or renamed, and a field's meaning never changes; consumers must
//! ignore fields and record types they do not know. Finding codes never
//! change meaning: a code that is retired is not reused. New finding kinds
//! or item statuses, or any other incompatible change, come with a new
//! `version`.

use super::{CheckReport, ItemCounts};
use scrub::{Finding, FindingKind, ItemReport, ItemStatus};
use serde::Serialize;
use std::io::{self, Write};

/// The version of the wire format written in `begin`.
pub const VERSION: u32 = 1;

/// One line of output.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Record<'a> {
    /// The first line.
    Begin(Begin<'a>),
    /// One finding.
    Finding(FindingRecord<'a>),
    /// An item that did not simply run to its end.
    Item(ItemRecord<'a>),
    /// Staging memory statistics (`--stats`).
    Stats(StatsRecord),
    /// The last line.
    Summary(Summary<'a>),
}

/// The `begin` record.
#[derive(Debug, Serialize)]
pub struct Begin<'a> {
    /// Wire format version.
    pub version: u32,
    /// `"scrubd"`.
    pub tool: &'static str,
    /// The tool's version.
    pub tool_version: &'static str,
    /// The image as named on the command line.
    pub image: &'a str,
    /// Filesystem UUID.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uuid: Option<&'a str>,
    /// Number of AGs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ags: Option<u32>,
    /// Blocks per AG.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agblocks: Option<u32>,
    /// Block size in bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blocksize: Option<u32>,
    /// Blocks in the data device.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dblocks: Option<u64>,
    /// Inode size in bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inodesize: Option<u32>,
    /// Features that change what is checked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub features: Option<&'a [&'static str]>,
    /// Log state.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log: Option<&'static str>,
    /// Staging memory budget in bytes.
    pub memory: u64,
    /// Worker threads.
    pub threads: usize,
    /// Selected scrubbers.
    pub scrubbers: &'a [&'static str],
    /// Items planned.
    pub items: u64,
}

/// The `finding` record: a [`Finding`] with its location flattened.
#[derive(Debug, Serialize)]
pub struct FindingRecord<'a> {
    /// Kind.
    pub kind: FindingKind,
    /// Stable code.
    pub code: &'a str,
    /// Structure.
    pub structure: &'a str,
    /// AG.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ag: Option<u64>,
    /// Block.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub block: Option<u64>,
    /// Inode.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inode: Option<u64>,
    /// Byte offset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// Record index.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record: Option<u64>,
    /// Path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<&'a str>,
    /// Field.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<&'a str>,
    /// Expected value or rule.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected: Option<&'a str>,
    /// Actual value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actual: Option<&'a str>,
    /// Sentence for people.
    pub message: &'a str,
}

impl<'a> From<&'a Finding> for FindingRecord<'a> {
    fn from(f: &'a Finding) -> Self {
        let l = &f.location;
        FindingRecord {
            kind: f.kind,
            code: &f.code,
            structure: &f.structure,
            ag: l.group,
            block: l.block,
            inode: l.inode,
            offset: l.offset,
            record: l.record,
            path: l.path.as_deref(),
            field: f.field.as_deref(),
            expected: f.expected.as_deref(),
            actual: f.actual.as_deref(),
            message: &f.message,
        }
    }
}

/// The `item` record.
#[derive(Debug, Serialize)]
pub struct ItemRecord<'a> {
    /// Scrubber.
    pub scrubber: &'static str,
    /// AG.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ag: Option<u64>,
    /// `absent`, `impossible`, `failed` or `cancelled`.
    pub status: &'static str,
    /// Why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'a str>,
    /// Failed items: whether the cause was operational.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operational: Option<bool>,
}

impl<'a> ItemRecord<'a> {
    /// The record for `item`, or `None` if it ran to its end.
    pub fn of(item: &'a ItemReport) -> Option<Self> {
        let (status, reason, operational) = match &item.status {
            ItemStatus::Done => return None,
            ItemStatus::Absent { reason } => ("absent", Some(reason.as_str()), None),
            ItemStatus::Impossible { reason } => ("impossible", Some(reason.as_str()), None),
            ItemStatus::Failed { error, operational } => {
                ("failed", Some(error.as_str()), Some(*operational))
            }
            ItemStatus::Cancelled => ("cancelled", None, None),
        };
        Some(ItemRecord {
            scrubber: item.item.scrubber,
            ag: item.item.group,
            status,
            reason,
            operational,
        })
    }
}

/// The `stats` record.
#[derive(Debug, Serialize)]
pub struct StatsRecord {
    /// Budget limit in bytes.
    pub limit: u64,
    /// Highest total staging memory held at once.
    pub peak_resident_bytes: u64,
    /// One entry per structure name.
    pub structures: Vec<StructureStats>,
}

/// One staging structure name in the `stats` record.
#[derive(Debug, Serialize)]
pub struct StructureStats {
    /// The name.
    pub name: String,
    /// Structures created under it.
    pub instances: u64,
    /// Records held.
    pub records: u64,
    /// Bytes written in.
    pub bytes_staged: u64,
    /// Highest memory any one held.
    pub peak_resident_bytes: u64,
    /// Bytes spilled to the backing file.
    pub bytes_spilled: u64,
    /// Pages evicted.
    pub evictions: u64,
    /// Pages read back.
    pub page_ins: u64,
}

impl StatsRecord {
    fn of(st: &super::StagingReport) -> Self {
        StatsRecord {
            limit: st.limit,
            peak_resident_bytes: st.peak_resident_bytes,
            structures: st
                .structures
                .iter()
                .map(|x| StructureStats {
                    name: x.name.clone(),
                    instances: x.instances,
                    records: x.records,
                    bytes_staged: x.bytes_staged,
                    peak_resident_bytes: x.peak_resident_bytes,
                    bytes_spilled: x.bytes_spilled,
                    evictions: x.evictions,
                    page_ins: x.page_ins,
                })
                .collect(),
        }
    }
}

/// The `summary` record.
#[derive(Debug, Serialize)]
pub struct Summary<'a> {
    /// Findings of each kind.
    pub counts: Counts,
    /// Damage findings.
    pub problems: u64,
    /// Whether there is damage.
    pub damaged: bool,
    /// Structures with damage.
    pub damaged_structures: Vec<&'a str>,
    /// How the items ended.
    pub items: ItemCounts,
    /// Whether the run was cancelled.
    pub cancelled: bool,
    /// The exit code.
    pub exit_code: u8,
    /// Wall time in milliseconds.
    pub elapsed_ms: u64,
}

/// Number of findings of each kind, most severe first.
#[derive(Debug, Default, Serialize)]
pub struct Counts {
    /// `corrupt` findings.
    pub corrupt: u64,
    /// `xref-corrupt` findings.
    #[serde(rename = "xref-corrupt")]
    pub xref_corrupt: u64,
    /// `xref-failed` findings.
    #[serde(rename = "xref-failed")]
    pub xref_failed: u64,
    /// `incomplete` findings.
    pub incomplete: u64,
    /// `preen` findings.
    pub preen: u64,
    /// `warning` findings.
    pub warning: u64,
}

impl Counts {
    fn of(r: &CheckReport) -> Self {
        let mut c = Counts::default();
        for (k, n) in r.counts() {
            let slot = match k {
                FindingKind::Corrupt => &mut c.corrupt,
                FindingKind::XrefCorrupt => &mut c.xref_corrupt,
                FindingKind::XrefFailed => &mut c.xref_failed,
                FindingKind::Incomplete => &mut c.incomplete,
                FindingKind::Preen => &mut c.preen,
                FindingKind::Warning => &mut c.warning,
            };
            *slot = n;
        }
        c
    }
}

/// Every record of `r`, in output order.
pub fn records(r: &CheckReport) -> Vec<Record<'_>> {
    let fs = r.fs.as_ref();
    let mut out = vec![Record::Begin(Begin {
        version: VERSION,
        tool: "scrubd",
        tool_version: env!("CARGO_PKG_VERSION"),
        image: &r.image,
        uuid: fs.map(|f| f.uuid.as_str()),
        ags: fs.map(|f| f.ag_count),
        agblocks: fs.map(|f| f.ag_blocks),
        blocksize: fs.map(|f| f.block_size),
        dblocks: fs.map(|f| f.dblocks),
        inodesize: fs.map(|f| f.inode_size),
        features: fs.map(|f| f.features.as_slice()),
        log: fs.map(|f| f.log),
        memory: r.memory,
        threads: r.threads,
        scrubbers: &r.scrubbers,
        items: r.planned_items,
    })];
    out.extend(r.notices.iter().map(|f| Record::Finding(f.into())));
    for item in &r.items {
        out.extend(item.findings.iter().map(|f| Record::Finding(f.into())));
        if let Some(rec) = ItemRecord::of(item) {
            out.push(Record::Item(rec));
        }
    }
    if let Some(st) = &r.stats {
        out.push(Record::Stats(StatsRecord::of(st)));
    }
    let problems = r.problems();
    out.push(Record::Summary(Summary {
        counts: Counts::of(r),
        problems,
        damaged: problems > 0,
        damaged_structures: r.damaged_structures(),
        items: r.item_counts(),
        cancelled: r.cancelled,
        exit_code: r.exit_code(),
        elapsed_ms: u64::try_from(r.elapsed.as_millis()).unwrap_or(u64::MAX),
    }));
    out
}

/// Writes `r` as JSON Lines.
pub fn write(r: &CheckReport, out: &mut dyn Write) -> io::Result<()> {
    for rec in records(r) {
        serde_json::to_writer(&mut *out, &rec)?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::sample;
    use serde_json::Value;

    #[test]
    fn sample_report_lines() {
        let mut buf = Vec::new();
        write(&sample(), &mut buf).unwrap();
        let text = String::from_utf8(buf).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let types: Vec<&str> = lines.iter().map(|v| v["type"].as_str().unwrap()).collect();
        assert_eq!(
            types,
            [
                "begin", "finding", "finding", "finding", "item", "finding", "item", "item",
                "item", "finding", "item", "summary"
            ]
        );
        assert_eq!(lines[0]["version"], 1);
        assert_eq!(lines[0]["tool"], "scrubd");
        assert_eq!(lines[0]["uuid"], "5c2bd000-0000-4000-8000-000000000003");
        assert_eq!(lines[0]["log"], "dirty");
        assert_eq!(lines[0]["features"], serde_json::json!(["crc", "finobt"]));
        assert!(lines[1].get("ag").is_none(), "unknown fields are left out");
        assert_eq!(lines[1]["code"], "log.dirty");
        assert_eq!(lines[2]["ag"], 0);
        assert_eq!(lines[2]["field"], "freeblks");
        assert_eq!(lines[2]["expected"], "1");
        assert_eq!(lines[2]["actual"], "2");
        assert_eq!(lines[4]["status"], "failed");
        assert_eq!(lines[4]["operational"], true);
        assert_eq!(lines[5]["kind"], "xref-corrupt");
        assert_eq!(lines[5]["record"], 3);
        assert_eq!(lines[6]["status"], "cancelled");
        assert!(lines[6].get("reason").is_none());
        assert_eq!(lines[7]["status"], "absent");
        assert_eq!(lines[7]["scrubber"], "finobt");
        assert_eq!(lines[7]["reason"], "the filesystem has no free inode btree");
        assert_eq!(lines[9]["code"], "rmapbt.not-possible");
        assert_eq!(lines[10]["status"], "impossible");
        let s = &lines[11];
        assert_eq!(s["counts"]["corrupt"], 1);
        assert_eq!(s["counts"]["preen"], 0);
        assert_eq!(s["problems"], 2);
        assert_eq!(s["damaged"], true);
        assert_eq!(s["damaged_structures"], serde_json::json!(["agf", "bnobt"]));
        assert_eq!(s["items"]["cancelled"], 1);
        assert_eq!(s["exit_code"], 4 | 8 | 32);
        assert_eq!(s["elapsed_ms"], 5);
        assert!(lines[1].get("ag").is_none(), "unknown fields are left out");
        // Counts in severity order, every kind present.
        let counts = text.lines().last().unwrap();
        assert!(
            counts.contains(r#""counts":{"corrupt":1,"xref-corrupt":1,"xref-failed":0,"incomplete":1,"preen":0,"warning":2}"#),
            "{counts}"
        );
    }

    #[test]
    fn unusable_superblock_leaves_geometry_out() {
        let mut r = sample();
        r.fs = None;
        let mut buf = Vec::new();
        write(&r, &mut buf).unwrap();
        let first: Value =
            serde_json::from_str(String::from_utf8(buf).unwrap().lines().next().unwrap()).unwrap();
        for k in [
            "uuid",
            "ags",
            "agblocks",
            "blocksize",
            "dblocks",
            "inodesize",
            "features",
            "log",
        ] {
            assert!(first.get(k).is_none(), "{k}: {first}");
        }
        assert_eq!(first["memory"], 64 << 20);
    }
}
