//! Ctrl-C: the first SIGINT cancels the check (exit 32, with a report of
//! what was done), the second exits at once (exit 32, no report).

use crate::common::{fixture, json_lines, workspace};
use rustix::process::{Pid, Signal, kill_process};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Starts `scrubd check --json` on the large fixture, slowed down (one
/// thread, a tiny staging budget), and waits until it has installed its
/// SIGINT handler, so that the signal is handled rather than fatal.
fn start() -> Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_scrubd"))
        .current_dir(workspace())
        .args([
            "check",
            "--json",
            "--threads",
            "1",
            "--memory",
            "1M",
            "testdata/images/large.img.zst",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = format!("/proc/{}/status", child.id());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let caught = std::fs::read_to_string(&status)
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("SigCgt:"))
                    .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
            })
            .unwrap_or(0);
        // SIGINT is signal 2: bit 1 of the mask.
        if caught & (1 << 1) != 0 {
            return child;
        }
        if child.try_wait().unwrap().is_some() || Instant::now() > deadline {
            let _ = child.kill();
            panic!("scrubd did not install a SIGINT handler");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn interrupt(child: &Child) {
    kill_process(Pid::from_child(child), Signal::INT).unwrap();
}

#[test]
fn first_ctrl_c_cancels_with_a_report() {
    if !fixture("large").exists() {
        return;
    }
    // The check may finish before the signal lands (exit 0): try again a
    // few times before concluding anything.
    for attempt in 0..3 {
        let child = start();
        interrupt(&child);
        let out = child.wait_with_output().unwrap();
        let run = crate::common::Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        if run.code == 0 {
            eprintln!("attempt {attempt}: finished before the signal; again");
            continue;
        }
        assert_eq!(run.code, 32, "{}", run.stderr);
        assert!(run.stderr.contains("interrupted"), "{}", run.stderr);
        let lines = json_lines(&run);
        let summary = lines.last().unwrap();
        assert_eq!(summary["cancelled"], true);
        assert!(
            summary["items"]["cancelled"].as_u64().unwrap() > 0,
            "{summary}"
        );
        assert!(
            lines
                .iter()
                .any(|l| l["type"] == "item" && l["status"] == "cancelled"),
            "{}",
            run.stdout
        );
        return;
    }
    panic!("the check always finished before SIGINT arrived");
}

#[test]
fn second_ctrl_c_exits_at_once() {
    if !fixture("large").exists() {
        return;
    }
    for attempt in 0..3 {
        let child = start();
        interrupt(&child);
        std::thread::sleep(Duration::from_millis(20));
        interrupt(&child);
        let out = child.wait_with_output().unwrap();
        let code = out.status.code().unwrap_or(-1);
        if code == 0 {
            eprintln!("attempt {attempt}: finished before the signals; again");
            continue;
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(code, 32, "{stderr}");
        if out.stdout.is_empty() {
            assert!(stderr.contains("exiting now"), "{stderr}");
        } else {
            // The first signal's cancelled run finished printing before
            // the second signal arrived: still a cancelled run.
            assert!(String::from_utf8_lossy(&out.stdout).contains(r#""cancelled":true"#));
        }
        return;
    }
    panic!("the check always finished before SIGINT arrived");
}
