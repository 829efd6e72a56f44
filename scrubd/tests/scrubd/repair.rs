//! `scrubd repair` and `scrubd undo`: a dry run writes nothing, a commit
//! repairs (exit 1) and a second run finds nothing (exit 0), undo gives
//! back every byte, and what must not be repaired is refused (exit 8).

use crate::common::{corrupt_image, decompress, fixture, scrubd_in};

#[test]
fn dry_run_commit_and_undo() {
    let dir = tempfile::tempdir().unwrap();
    let name = corrupt_image("cntbt-recs84-blockcount-ones", dir.path());
    let path = dir.path().join(&name);
    let original = std::fs::read(&path).unwrap();

    // Dry run: the plan, exit 4, not a byte written, no sidecar files.
    let r = scrubd_in(Some(dir.path()), &["repair", &name]);
    assert_eq!(r.code, 4, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("rebuild bnobt+cntbt+agfl+agf AG"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("dry run: nothing was written"),
        "{}",
        r.stdout
    );
    assert!(
        std::fs::read(&path).unwrap() == original,
        "the dry run wrote"
    );
    assert!(!dir.path().join(format!("{name}.scrubd-undo")).exists());

    // Commit with the undo file elsewhere: exit 1, all damage repaired.
    let undo = dir.path().join("undo-file");
    let undo_arg = undo.to_str().unwrap();
    let r = scrubd_in(
        Some(dir.path()),
        &["repair", "--commit", "--undo-file", undo_arg, &name],
    );
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("after repair: 0 of"), "{}", r.stdout);
    assert!(undo.exists());
    let r = scrubd_in(Some(dir.path()), &["repair", &name]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);

    // Undo, twice: the damaged image is back, byte for byte.
    for _ in 0..2 {
        let r = scrubd_in(Some(dir.path()), &["undo", undo_arg, &name]);
        assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
        assert!(
            std::fs::read(&path).unwrap() == original,
            "undo left a difference"
        );
    }
}

#[test]
fn refuses_what_must_not_be_repaired() {
    let dir = tempfile::tempdir().unwrap();
    // A compressed image cannot be written.
    let zst = fixture("rmapbt");
    let r = scrubd_in(None, &["repair", "--commit", zst.to_str().unwrap()]);
    assert_eq!(r.code, 8, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("compressed"), "{}", r.stderr);
    // A dirty log must be replayed by mounting first.
    let img = dir.path().join("dirtylog.img");
    decompress("dirtylog", &img);
    let r = scrubd_in(None, &["repair", "--commit", img.to_str().unwrap()]);
    assert_eq!(r.code, 8, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("log is dirty"), "{}", r.stderr);
}

/// A dry run of a refcountbt repair: the plan (the tree moves, so the
/// rmapbt and free space are rebuilt with it) and the re-check of the
/// planned result on an overlay, as a snapshot; the image stays
/// byte-identical and no sidecar file appears.
#[test]
fn dry_run_rechecks_the_planned_result() {
    let dir = tempfile::tempdir().unwrap();
    let name = corrupt_image("refcountbt-recs1-refcount-add", dir.path());
    let path = dir.path().join(&name);
    let original = std::fs::read(&path).unwrap();
    let r = scrubd_in(
        Some(dir.path()),
        &["repair", "--memory", "64M", "--threads", "2", &name],
    );
    assert_eq!(r.code, 4, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("re-check of the planned result (") && r.stdout.contains("): clean"),
        "{}",
        r.stdout
    );
    assert!(
        std::fs::read(&path).unwrap() == original,
        "the dry run wrote"
    );
    assert!(!dir.path().join(format!("{name}.scrubd-undo")).exists());
    let mut s = insta::Settings::clone_current();
    s.set_prepend_module_to_snapshot(false);
    let tmp = dir.path().display().to_string();
    s.add_filter(&crate::check::regex_escape(&tmp), "[TMP]");
    s.bind(|| {
        insta::assert_snapshot!(
            "repair-dry-run-refcountbt",
            format!("exit code: {}\n---\n{}{}", r.code, r.stdout, r.stderr)
        );
    });
}
