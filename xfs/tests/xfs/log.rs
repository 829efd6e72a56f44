//! Log state detection: clean after mkfs and after a clean unmount, zeroed
//! after the log is wiped, dirty after a shutdown with writes in flight.

use crate::common::{have_xfsprogs, is_root, mkfs, open};
use std::process::Command;
use xfs::log::LogState;

#[test]
fn fresh_log_is_clean_and_wiped_log_is_zeroed() {
    if !have_xfsprogs("fresh_log_is_clean_and_wiped_log_is_zeroed") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("l.img");
    mkfs(&img, 64, &[]);
    let fs = open(&img).unwrap();
    let LogState::Clean { head } = fs.log_state().clone() else {
        panic!("fresh log: {}", fs.log_state());
    };
    let start = fs.geometry().log.start_daddr.to_bytes().unwrap();
    let len = fs.geometry().log.bb_count * 512;
    drop(fs);
    eprintln!("fresh log head: {head}");

    // Zero the whole log: nothing to replay.
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new().write(true).open(&img).unwrap();
        f.write_all_at(&vec![0u8; usize::try_from(len).unwrap()], start)
            .unwrap();
    }
    let fs = open(&img).unwrap();
    assert_eq!(fs.log_state(), &LogState::Zeroed);

    // Garbage where the log should be is reported, not a panic.
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new().write(true).open(&img).unwrap();
        let junk: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8 + 1).collect();
        f.write_all_at(&junk, start).unwrap();
    }
    let fs = open(&img).unwrap();
    assert!(!fs.log_state().is_clean(), "junk log: {}", fs.log_state());
}

/// Loop-mounts `img`, runs `work` in the mount point, then either unmounts
/// cleanly or shuts the filesystem down first (leaving a dirty log).
fn mount_and(img: &std::path::Path, shutdown: bool, work: impl FnOnce(&std::path::Path)) {
    let mnt = tempfile::tempdir().unwrap();
    let st = Command::new("mount")
        .arg("-o")
        .arg("loop")
        .arg(img)
        .arg(mnt.path())
        .status()
        .unwrap();
    assert!(st.success(), "mount failed");
    work(mnt.path());
    if shutdown {
        // Make the log hold the writes (fsync), then shut down without
        // flushing metadata in place.
        let st = Command::new("xfs_io")
            .args(["-x", "-c", "shutdown"])
            .arg(mnt.path())
            .status()
            .unwrap();
        assert!(st.success(), "xfs_io shutdown failed");
    }
    let st = Command::new("umount").arg(mnt.path()).status().unwrap();
    assert!(st.success(), "umount failed");
}

#[test]
fn dirty_log_after_shutdown() {
    if !have_xfsprogs("dirty_log_after_shutdown") || !is_root("dirty_log_after_shutdown") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("d.img");
    mkfs(&img, 64, &[]);
    mount_and(&img, false, |m| {
        std::fs::write(m.join("clean"), b"x").unwrap();
    });
    let fs = open(&img).unwrap();
    assert!(
        matches!(fs.log_state(), LogState::Clean { .. }),
        "after clean unmount: {}",
        fs.log_state()
    );
    drop(fs);
    mount_and(&img, true, |m| {
        for i in 0..50 {
            let p = m.join(format!("f{i}"));
            std::fs::write(&p, vec![7u8; 1000]).unwrap();
            std::fs::File::open(&p).unwrap().sync_all().unwrap();
        }
    });
    let fs = open(&img).unwrap();
    let LogState::Dirty { head, tail } = fs.log_state().clone() else {
        panic!("after shutdown: {}", fs.log_state());
    };
    eprintln!("dirty log: head {head}, tail {tail}");
    assert!(fs.warnings().iter().any(|w| w.contains("dirty")));
    // xfs_logprint agrees the log needs recovery.
    let out = Command::new("xfs_logprint")
        .arg("-t")
        .arg(&img)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("<CLEAN>"), "xfs_logprint says clean: {text}");
}
