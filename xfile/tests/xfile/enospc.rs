//! A full filesystem under the backing file: NoSpace, never a panic, and
//! what was staged stays readable.

use std::path::{Path, PathBuf};
use std::process::Command;

use xfile::{MemoryBudget, StagingError, XFile, XFileOptions, XfArray};

/// A small tmpfs mounted for the test, unmounted on drop.
struct TinyFs {
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
}

impl TinyFs {
    /// Mount a tmpfs of `size` (e.g. "2m"), or say why not.
    fn mount(size: &str) -> Result<TinyFs, String> {
        if !rustix::process::geteuid().is_root() {
            return Err("not running as root, cannot mount a tmpfs".into());
        }
        let dir = tempfile::tempdir().map_err(|e| format!("tempdir: {e}"))?;
        let path = dir.path().to_owned();
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(&path)
            .output()
            .map_err(|e| format!("running mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(TinyFs {
            dir: Some(dir),
            path,
        })
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TinyFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.path).status();
        drop(self.dir.take());
    }
}

fn pattern(off: u64) -> u8 {
    (off.wrapping_mul(2654435761) >> 13) as u8 | 1
}

#[test]
fn full_filesystem_gives_no_space_and_keeps_staged_data() {
    let fs = match TinyFs::mount("2m") {
        Ok(fs) => fs,
        Err(why) => {
            println!("SKIPPED full_filesystem_gives_no_space_and_keeps_staged_data: {why}");
            return;
        }
    };
    const PS: u64 = 65536;
    let budget = MemoryBudget::new(4 * PS);
    let opts = XFileOptions {
        tmpdir: Some(fs.path().to_owned()),
        ..XFileOptions::default()
    };
    let f = XFile::with_options("fills-up", &budget, opts.clone()).expect("create");
    let mut written = 0u64;
    let err = loop {
        let chunk: Vec<u8> = (written..written + PS).map(pattern).collect();
        match f.write_at(&chunk, written) {
            Ok(()) => written += PS,
            Err(e) => break e,
        }
        assert!(written < 64 << 20, "a 2 MiB filesystem took 64 MiB");
    };
    assert!(
        matches!(err, StagingError::NoSpace { .. }),
        "expected NoSpace, got {err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("no space left") && msg.contains(&fs.path().display().to_string()),
        "{msg}"
    );
    // 2 MiB of file plus 4 cached pages.
    assert!(written >= (2 << 20) - 4 * PS, "only {written} bytes staged");

    // Everything staged before the error reads back: written-back pages
    // from the file, pages that could not be written back from memory.
    let mut buf = vec![0u8; PS as usize];
    for off in (0..written).step_by(PS as usize) {
        f.read_at(&mut buf, off).expect("read staged data");
        assert!(
            buf.iter()
                .enumerate()
                .all(|(i, &b)| b == pattern(off + i as u64)),
            "page at {off} differs"
        );
    }
    // Pinned access to a staged page still works or fails cleanly.
    match f.with_page(0, |p| p[1]) {
        Ok(b) => assert_eq!(b, pattern(1)),
        Err(e) => assert!(
            matches!(
                e,
                StagingError::NoSpace { .. } | StagingError::BudgetExhausted { .. }
            ),
            "{e}"
        ),
    }
    // Freeing space makes the file writable again.
    f.truncate(0).expect("truncate");
    f.write_at(&[5u8; 100_000], 0)
        .expect("write after truncate");
    assert_eq!(f.load::<u8>(99_999).expect("load"), 5);
    drop(f);

    // A sort that runs out of scratch space reports NoSpace too, and the
    // array is still readable.
    let small = MemoryBudget::new(2 * PS);
    let mut a = XfArray::<u64>::with_options("sort-fills-up", &small, opts).expect("create");
    let n = (1200 << 10) / 8;
    for i in 0..n {
        a.append(n - i).expect("append");
    }
    let e = a
        .sort_by(|x, y| x.cmp(y))
        .expect_err("scratch space cannot fit");
    // The array keeps its length; after a failed sort its order and (if the
    // last merge pass failed) its records are unspecified.

    assert!(matches!(e, StagingError::NoSpace { .. }), "{e:?}");
    assert_eq!(a.len(), n);
    for i in (0..n).step_by(997) {
        let v = a.get(i).expect("get after failed sort");
        assert!((1..=n).contains(&v));
    }
}
