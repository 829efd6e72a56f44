//! `scrubd check` against `xfs_repair -n` on the largest fixture (`large`,
//! 320 MiB, multi-level btrees): wall time and peak RSS of both, measured
//! in the same run.
//!
//! Whole-process measurements, so no criterion: the image is decompressed
//! once, then the two commands run alternately `RUNS` times each. Wall
//! time is the median of the runs; peak RSS is the largest maximum
//! resident set size any run reached, as `/usr/bin/time -f %M` reports it
//! (GNU time, Debian package `time`). Prints one line per run and then
//!
//! `ratio check_vs_repair: wall X.XXx (scrubd A ms / xfs_repair B ms), peak RSS Y.YYx (scrubd C MiB / xfs_repair D MiB)`
//!
//! Run with `cargo bench -p scrubd --bench check_vs_repair`. Both commands
//! use their defaults (scrubd: threads = CPUs, staging budget 1/8 of RAM).
//! Set `SCRUBD_TMPDIR` to put the decompressed image elsewhere.
//!
//! With `SCRUBD_SPILL_IMAGE` naming an image made by
//! `testdata/make-spill-image.sh` (root and a loop device needed, so it is
//! not made here), a second part checks that image whose reverse-map
//! shadow (about 70 MB of staging) cannot fit a 16 MiB budget: `scrubd
//! check --threads 1 --memory 16M` against `--memory 4G` and `xfs_repair
//! -n`, asserting that both budgets give the same findings, and prints
//!
//! `ratio shadow_budget: peak RSS X.XXx (16M A MiB / 4G B MiB), wall Y.YYx (16M C ms / 4G D ms); xfs_repair -n E ms, F MiB`

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs of each command.
const RUNS: usize = 3;

/// GNU time, which reports a child's peak RSS.
const TIME: &str = "/usr/bin/time";

/// One measured run: wall time and peak RSS in KiB.
struct Measure {
    wall: Duration,
    rss_kib: u64,
}

fn main() {
    // `cargo bench` passes `--bench`; a filter that does not name us
    // means another benchmark was asked for.
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args
        .iter()
        .any(|a| !a.starts_with('-') && !"check_vs_repair".contains(a.as_str()))
    {
        return;
    }
    for tool in ["xfs_repair", TIME] {
        if Command::new(tool).arg("-V").output().is_err() {
            eprintln!("SKIP check_vs_repair: {tool} not installed (apt-get install xfsprogs time)");
            return;
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let zst = root.join("testdata/images/large.img.zst");
    if !zst.exists() {
        eprintln!("SKIP check_vs_repair: {} missing", zst.display());
        return;
    }
    let tmp = std::env::var_os("SCRUBD_TMPDIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let dir = tempfile::tempdir_in(tmp).expect("temporary directory");
    let img = dir.path().join("large.img");
    decompress(&zst, &img);

    let scrubd = env!("CARGO_BIN_EXE_scrubd");
    let img_s = img.to_str().expect("UTF-8 temporary path");
    let check: Vec<&str> = vec![scrubd, "check", "--quiet", img_s];
    let repair: Vec<&str> = vec!["xfs_repair", "-n", "-f", img_s];

    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    for i in 0..RUNS {
        for (name, cmd, out) in [
            ("scrubd check", &check, &mut ours),
            ("xfs_repair -n", &repair, &mut theirs),
        ] {
            let m = measure(cmd);
            println!(
                "run {i}: {name:<14} {:>6} ms  {:>6} MiB",
                m.wall.as_millis(),
                m.rss_kib / 1024
            );
            out.push(m);
        }
    }
    let (a, b) = (median_wall(&ours), median_wall(&theirs));
    let (c, d) = (max_rss(&ours), max_rss(&theirs));
    println!(
        "ratio check_vs_repair: wall {:.2}x (scrubd {} ms / xfs_repair {} ms), peak RSS {:.2}x (scrubd {:.1} MiB / xfs_repair {:.1} MiB)",
        a.as_secs_f64() / b.as_secs_f64(),
        a.as_millis(),
        b.as_millis(),
        c as f64 / d as f64,
        c as f64 / 1024.0,
        d as f64 / 1024.0,
    );
    if let Some(spill) = std::env::var_os("SCRUBD_SPILL_IMAGE") {
        shadow_budget(scrubd, Path::new(&spill));
    }
}

/// The second part: one image, two staging budgets, the same findings.
fn shadow_budget(scrubd: &str, img: &Path) {
    let img_s = img.to_str().expect("UTF-8 image path");
    let run = |memory: &'static str| -> Vec<&str> {
        vec![
            scrubd,
            "check",
            "--quiet",
            "--threads",
            "1",
            "--memory",
            memory,
            img_s,
        ]
    };
    let (small, large) = (run("16M"), run("4G"));
    let repair: Vec<&str> = vec!["xfs_repair", "-n", "-f", img_s];
    let (mut s, mut l, mut r) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..RUNS {
        for (name, cmd, out) in [
            ("check --memory 16M", &small, &mut s),
            ("check --memory 4G", &large, &mut l),
            ("xfs_repair -n", &repair, &mut r),
        ] {
            let m = measure(cmd);
            println!(
                "spill run {i}: {name:<19} {:>6} ms  {:>6} MiB",
                m.wall.as_millis(),
                m.rss_kib / 1024
            );
            out.push(m);
        }
    }
    let findings = |memory: &str| -> String {
        let out = Command::new(scrubd)
            .args([
                "check",
                "--json",
                "--threads",
                "1",
                "--memory",
                memory,
                img_s,
            ])
            .output()
            .expect("spawn");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.contains(r#""type":"finding""#))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(
        findings("16M"),
        findings("4G"),
        "the budget changed the findings"
    );
    let (a, b) = (max_rss(&s), max_rss(&l));
    let (c, d) = (median_wall(&s), median_wall(&l));
    println!(
        "ratio shadow_budget: peak RSS {:.2}x (16M {:.1} MiB / 4G {:.1} MiB), wall {:.2}x (16M {} ms / 4G {} ms); xfs_repair -n {} ms, {:.1} MiB",
        a as f64 / b as f64,
        a as f64 / 1024.0,
        b as f64 / 1024.0,
        c.as_secs_f64() / d.as_secs_f64(),
        c.as_millis(),
        d.as_millis(),
        median_wall(&r).as_millis(),
        max_rss(&r) as f64 / 1024.0,
    );
}

/// Decompresses `zst` to `out`.
fn decompress(zst: &Path, out: &Path) {
    let input = std::fs::File::open(zst).expect("open fixture");
    let mut dec = zstd::stream::read::Decoder::new(input).expect("zstd");
    let mut f = std::fs::File::create(out).expect("create image");
    std::io::copy(&mut dec, &mut f).expect("decompress");
}

/// Runs `cmd` under GNU time; panics unless it exits with 0 (the image is
/// clean, so both tools must say so).
fn measure(cmd: &[&str]) -> Measure {
    let rss_file = tempfile::NamedTempFile::new().expect("temp file");
    let start = Instant::now();
    let status = Command::new(TIME)
        .args(["-f", "%M", "-o"])
        .arg(rss_file.path())
        .args(cmd)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("spawn");
    let wall = start.elapsed();
    assert!(status.success(), "{cmd:?} failed: {status}");
    let text = std::fs::read_to_string(rss_file.path()).expect("read time output");
    let rss_kib = text
        .lines()
        .filter_map(|l| l.trim().parse::<u64>().ok())
        .next_back()
        .unwrap_or_else(|| panic!("no RSS figure in {text:?}"));
    Measure { wall, rss_kib }
}

fn median_wall(m: &[Measure]) -> Duration {
    let mut w: Vec<Duration> = m.iter().map(|m| m.wall).collect();
    w.sort();
    w[w.len() / 2]
}

fn max_rss(m: &[Measure]) -> u64 {
    m.iter().map(|m| m.rss_kib).max().unwrap_or(0)
}
