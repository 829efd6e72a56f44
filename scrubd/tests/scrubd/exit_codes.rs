//! `scrubd check` exit codes and one-line error messages.

use crate::common::{corrupt_image, fixture, json_lines, rel_fixture, scrubd, scrubd_in};

/// An operational error: exit 8, one line on stderr, nothing on stdout.
fn assert_operational(args: &[&str], needle: &str) {
    let r = scrubd(args);
    assert_eq!(r.code, 8, "{args:?}: {}", r.stderr);
    assert_eq!(r.stderr.lines().count(), 1, "{args:?}: {}", r.stderr);
    assert!(r.stderr.starts_with("scrubd: "), "{}", r.stderr);
    assert!(r.stderr.contains(needle), "{args:?}: {}", r.stderr);
    assert!(r.stdout.is_empty(), "{args:?}: {}", r.stdout);
}

#[test]
fn clean_exits_0() {
    let r = scrubd(&["check", &rel_fixture("rmapbt")]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("result: no damage found"), "{}", r.stdout);
    // Piped stderr: no progress bar, nothing at all.
    assert!(r.stderr.is_empty(), "{}", r.stderr);
}

#[test]
fn missing_file_v4_and_garbage_exit_8() {
    for json in [false, true] {
        let j: &[&str] = if json { &["--json"] } else { &[] };
        let args = |img: &str| -> Vec<String> {
            let mut v = vec!["check".to_owned()];
            v.extend(j.iter().map(|s| s.to_string()));
            v.push(img.to_owned());
            v
        };
        let run = |img: &str, needle: &str| {
            let a = args(img);
            let a: Vec<&str> = a.iter().map(String::as_str).collect();
            assert_operational(&a, needle);
        };
        run("/nonexistent/image", "No such file");
        if fixture("v4").exists() {
            run(
                &rel_fixture("v4"),
                "unsupported: v4 (non-CRC) XFS filesystems are not supported",
            );
        }
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.img");
        std::fs::write(&junk, vec![0u8; 4096]).unwrap();
        run(junk.to_str().unwrap(), "not an XFS filesystem");
        run(junk.to_str().unwrap(), "no valid secondary superblock");
        let tiny = dir.path().join("tiny.img");
        std::fs::write(&tiny, b"XFSB").unwrap();
        run(tiny.to_str().unwrap(), "scrubd: ");
    }
}

#[test]
fn damaged_primary_superblock_exits_4() {
    if !fixture("rmapbt").exists() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for (case, code) in [
        ("sb-magicnum-zeroes", "sb.magicnum"),
        ("sb-agcount-random", "sb.agcount"),
    ] {
        let image = corrupt_image(case, dir.path());
        let r = scrubd_in(Some(dir.path()), &["check", "--json", &image]);
        assert_eq!(r.code, 4, "{case}: {}", r.stderr);
        let lines = json_lines(&r);
        assert!(
            lines
                .iter()
                .any(|l| l["type"] == "finding" && l["kind"] == "corrupt" && l["code"] == code),
            "{case}: {}",
            r.stdout
        );
        let summary = lines.last().unwrap();
        assert_eq!(summary["damaged"], true);
        assert_eq!(summary["damaged_structures"], serde_json::json!(["sb"]));
        let r = scrubd_in(Some(dir.path()), &["check", &image]);
        assert_eq!(r.code, 4);
        assert!(r.stdout.contains("result: "), "{}", r.stdout);
        std::fs::remove_file(dir.path().join(&image)).unwrap();
    }
}

#[test]
fn truncated_image_is_damage_not_a_crash() {
    if !fixture("rmapbt").exists() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("short.img");
    crate::common::decompress("rmapbt", &img);
    let f = std::fs::OpenOptions::new().write(true).open(&img).unwrap();
    f.set_len(32 << 20).unwrap();
    let r = scrubd_in(Some(dir.path()), &["check", "--json", "short.img"]);
    assert_eq!(r.code, 4, "{}", r.stderr);
    let lines = json_lines(&r);
    assert!(
        lines.iter().any(|l| l["code"] == "sb.malformed"),
        "{}",
        r.stdout
    );
}

#[test]
fn usage_errors_exit_16() {
    let img = rel_fixture("empty");
    for args in [
        vec!["check"],
        vec!["check", "--frobnicate", &img],
        vec!["check", "--only", "nonsense", &img],
        vec!["check", "--only", "agf,nonsense", &img],
        vec!["check", "--memory", "12X", &img],
        vec!["check", "--memory", "", &img],
        vec!["check", "--threads", "0", &img],
        vec!["check", "--threads", "many", &img],
        vec!["check", &img, "extra"],
    ] {
        let r = scrubd(&args);
        assert_eq!(r.code, 16, "{args:?}: {}", r.stderr);
        assert!(r.stdout.is_empty(), "{args:?}: {}", r.stdout);
    }
    // An unknown name lists the valid ones.
    let r = scrubd(&["check", "--only", "nonsense", &img]);
    for name in [
        "sb", "agf", "agfl", "agi", "bnobt", "cntbt", "inobt", "rmapbt",
    ] {
        assert!(r.stderr.contains(name), "{name}: {}", r.stderr);
    }
}

#[test]
fn help_explains_flags_exit_codes_and_an_example() {
    let r = scrubd(&["check", "--help"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    for needle in [
        "--json",
        "--quiet",
        "--memory",
        "--threads",
        "--only",
        "Exit status",
        "4   damage found",
        "8   operational error",
        "16  usage error",
        "32  cancelled",
        "scrubd check testdata/images/rmapbt.img.zst",
    ] {
        assert!(r.stdout.contains(needle), "{needle}:\n{}", r.stdout);
    }
    // The example names a shipped fixture.
    assert!(fixture("rmapbt").exists());
}

#[test]
fn only_selects_scrubbers_and_items() {
    let r = scrubd(&[
        "check",
        "--json",
        "--only",
        "agf,bnobt",
        &rel_fixture("rmapbt"),
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let lines = json_lines(&r);
    assert_eq!(lines[0]["scrubbers"], serde_json::json!(["agf", "bnobt"]));
    assert_eq!(lines[0]["items"], 8);
    assert_eq!(lines.last().unwrap()["items"]["total"], 8);
    assert_eq!(lines.last().unwrap()["items"]["done"], 8);
}

#[test]
fn quiet_prints_only_findings_and_the_verdict() {
    let r = scrubd(&["check", "--quiet", &rel_fixture("dirtylog")]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!r.stdout.contains("uuid:"), "{}", r.stdout);
    assert!(
        r.stdout.contains("WARNING: the log is dirty"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("result: no damage found"), "{}", r.stdout);
}
