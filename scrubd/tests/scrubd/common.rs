//! Helpers: running the binary, fixtures, and the corruption corpus.

use std::path::{Path, PathBuf};
use std::process::Command;

/// What one run of the binary gave.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `scrubd args...` in `dir` (the workspace root if `None`).
pub fn scrubd_in(dir: Option<&Path>, args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_scrubd"))
        .current_dir(dir.unwrap_or(&workspace()))
        .args(args)
        .output()
        .unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs `scrubd args...` in the workspace root.
pub fn scrubd(args: &[&str]) -> Run {
    scrubd_in(None, args)
}

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// A fixture's compressed image, absolute.
pub fn fixture(name: &str) -> PathBuf {
    workspace().join(rel_fixture(name))
}

/// A fixture's compressed image, relative to the workspace root (what the
/// snapshots show).
pub fn rel_fixture(name: &str) -> String {
    format!("testdata/images/{name}.img.zst")
}

/// Decompresses a fixture to `out`.
pub fn decompress(name: &str, out: &Path) {
    let input = std::fs::File::open(fixture(name)).unwrap();
    let mut dec = zstd::stream::read::Decoder::new(input).unwrap();
    let mut f = std::fs::File::create(out).unwrap();
    std::io::copy(&mut dec, &mut f).unwrap();
}

/// One case of `testdata/corruptions/ag.jsonl`: its base image and patch.
pub struct Case {
    pub base: String,
    pub patch: Vec<(u64, Vec<u8>)>,
    pub repair_flags: bool,
}

/// Loads the corpus case `id`, as the xfs crate's agreement test does.
pub fn corruption(id: &str) -> Case {
    let v: serde_json::Value = ["ag", "inode", "dir"]
        .iter()
        .flat_map(|set| {
            let path = workspace().join(format!("testdata/corruptions/{set}.jsonl"));
            let text = std::fs::read_to_string(&path).unwrap();
            text.lines()
                .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
                .collect::<Vec<_>>()
        })
        .find(|v| v["id"] == id)
        .unwrap_or_else(|| panic!("no case {id} in testdata/corruptions"));
    let hex = |s: &str| -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    };
    Case {
        base: v["base"].as_str().unwrap().to_owned(),
        patch: v["patch"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["offset"].as_u64().unwrap(),
                    hex(p["hex"].as_str().unwrap()),
                )
            })
            .collect(),
        repair_flags: v["xfs_repair_n"]["exit"].as_i64().unwrap_or(0) != 0,
    }
}

/// Writes case `id` as `<dir>/<id>.img`: its base fixture decompressed and
/// patched. Returns the file name (relative to `dir`).
pub fn corrupt_image(id: &str, dir: &Path) -> String {
    use std::os::unix::fs::FileExt;
    let case = corruption(id);
    let name = format!("{id}.img");
    let path = dir.join(&name);
    decompress(&case.base, &path);
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    for (off, bytes) in &case.patch {
        f.write_all_at(bytes, *off).unwrap();
    }
    name
}

/// Parses JSON Lines output and checks the framing every run must have:
/// `begin` first, `summary` last and only there, and the summary's exit
/// code equal to the process's.
pub fn json_lines(run: &Run) -> Vec<serde_json::Value> {
    let lines: Vec<serde_json::Value> = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(lines.len() >= 2, "{}", run.stdout);
    assert_eq!(lines[0]["type"], "begin");
    assert_eq!(lines[0]["version"], 1);
    let last = lines.last().unwrap();
    assert_eq!(last["type"], "summary");
    assert_eq!(last["exit_code"], run.code, "summary exit_code vs process");
    for l in &lines[1..lines.len() - 1] {
        let t = l["type"].as_str().unwrap();
        assert!(t == "finding" || t == "item", "{l}");
    }
    lines
}
