#!/usr/bin/env python3
"""Ask xfs_db about an unmounted fixture image: the oracle for manifests.

As a module (used by manifest.py): superblock geometry, inode numbers by
path, and per-inode fork, directory and attribute formats.

As a command (used by make-fixtures.sh):

    xfsdb.py heights IMAGE [--require]
        print every AG's btree heights and the deepest file bmbt; with
        --require, fail unless one AG has bnobt, cntbt, inobt, finobt,
        rmapbt and refcountbt all of height >= 2 and a file has a bmbt of
        height >= 2.
    xfsdb.py formats MANIFEST
        print the directory (and attr fork) formats recorded in a manifest.

xfs_db is run read-only (-r) with its commands in a file, so one process
answers thousands of questions; "echo @@ <key>" lines separate the answers.
"""

import json
import os
import re
import subprocess
import sys
import tempfile

# Directory blocks live at fixed byte offsets in a directory's data fork
# (xfs_da_format.h): data blocks from 0, the hash-ordered leaf/node blocks
# from 32 GiB, the free-space index blocks from 64 GiB.
DIR2_LEAF_OFFSET = 32 << 30
DIR2_FREE_OFFSET = 64 << 30

ATTR3_LEAF_MAGIC = 0x3BEE
DA3_NODE_MAGIC = 0x3EBE


def run_xfs_db(image: str, commands: list) -> str:
    """Run `commands` (one per line) through `xfs_db -r`, return stdout."""
    with tempfile.NamedTemporaryFile("w", suffix=".xfsdb", encoding="utf-8",
                                     delete=False) as f:
        f.write("\n".join(commands) + "\n")
        script = f.name
    try:
        out = subprocess.run(["xfs_db", "-r", "-c", f"source {script}", image],
                             check=True, capture_output=True, text=True,
                             errors="surrogateescape")
    finally:
        os.unlink(script)
    return out.stdout


def split_answers(output: str) -> dict:
    """Split output of a script that precedes each question with `echo @@ KEY`."""
    answers = {}
    key = None
    for line in output.splitlines():
        if line.startswith("@@ "):
            key = line[3:].strip()
            answers[key] = []
        elif key is not None:
            answers[key].append(line)
    return answers


def fields(lines: list) -> dict:
    """Parse `name = value` lines; values like `2 (extents)` keep the word."""
    out = {}
    for line in lines:
        m = re.match(r"^(\S+) = (.*)$", line)
        if m:
            out[m.group(1)] = m.group(2).strip()
    return out


def fork_name(value: str) -> str:
    m = re.search(r"\((\w+)\)", value or "")
    return m.group(1) if m else "unknown"


def geometry(image: str) -> dict:
    out = run_xfs_db(image, ["sb 0",
                             "print uuid blocksize agcount agblocks dblocks inodesize rootino",
                             "print versionnum"])
    f = fields(out.splitlines())
    return {
        "uuid": f["uuid"],
        "blocksize": int(f["blocksize"]),
        "agcount": int(f["agcount"]),
        "agblocks": int(f["agblocks"]),
        "dblocks": int(f["dblocks"]),
        "inodesize": int(f["inodesize"]),
        "rootino": int(f["rootino"]),
        "version": int(f["versionnum"], 16) & 0xF,
    }


def lookup_inodes(image: str, paths: list) -> dict:
    """Inode number of each absolute path (names must not contain spaces)."""
    cmds = []
    for i, p in enumerate(paths):
        if any(c.isspace() for c in p):
            raise ValueError(f"xfs_db cannot look up a path with spaces: {p!r}")
        cmds += [f"echo @@ {i}", f"ls -i {p}"]
    ans = split_answers(run_xfs_db(image, cmds))
    out = {}
    for i, p in enumerate(paths):
        lines = [l for l in ans.get(str(i), []) if l.strip()]
        if len(lines) != 1 or not lines[0].strip().isdigit():
            raise RuntimeError(f"xfs_db could not resolve {p}: {lines}")
        out[p] = int(lines[0])
    return out


def describe_inodes(image: str, inos: list) -> dict:
    """Fork and format facts for each inode, from its on-disk core.

    Returns {ino: {"mode", "fork", "nextents", "attr_fork", "attr_format",
    optional "dir_format", optional "bmbt_height"}}.
    """
    geo = geometry(image)
    bs = geo["blocksize"]
    cmds = []
    for ino in inos:
        cmds += [f"echo @@ {ino}", f"inode {ino}",
                 "print core.mode core.format core.aformat core.nextents core.naextents core.forkoff"]
    first = split_answers(run_xfs_db(image, cmds))

    info = {}
    second = []
    for ino in inos:
        f = fields(first.get(str(ino), []))
        mode = int(f["core.mode"], 8)
        d = {
            "mode": mode,
            "fork": fork_name(f["core.format"]),
            "nextents": int(f["core.nextents"]),
            "attr_fork": fork_name(f["core.aformat"]),
        }
        naext = int(f["core.naextents"])
        if int(f["core.forkoff"]) == 0:
            # No attr fork at all (di_aformat still reads "extents").
            d["attr_fork"] = "none"
            d["attr_format"] = "none"
        elif d["attr_fork"] == "local":
            d["attr_format"] = "shortform"
        elif naext == 0:
            # Kernels with CONFIG_SECURITY give new inodes an empty attr fork
            # in extents format.
            d["attr_format"] = "empty"
        else:
            second += [f"echo @@ a{ino}", f"inode {ino}", "ablock 0",
                       "print hdr.info.hdr.magic"]
        is_dir = (mode & 0o170000) == 0o040000
        if is_dir and d["fork"] == "local":
            d["dir_format"] = "shortform"
        elif is_dir:
            second += [f"echo @@ d{ino}", f"inode {ino}", "bmap"]
        if d["fork"] == "btree":
            second += [f"echo @@ b{ino}", f"inode {ino}", "print u3.bmbt.level"]
        info[ino] = d

    ans = split_answers(run_xfs_db(image, second)) if second else {}
    for ino, d in info.items():
        if f"a{ino}" in ans:
            magic = fields(ans[f"a{ino}"]).get("hdr.info.hdr.magic", "")
            d["attr_format"] = {ATTR3_LEAF_MAGIC: "leaf", DA3_NODE_MAGIC: "node"}.get(
                int(magic, 16) if magic else -1, "unknown")
        if f"d{ino}" in ans:
            offsets = []
            for line in ans[f"d{ino}"]:
                m = re.match(r"^data offset (\d+) startblock \d+ .* count (\d+)", line)
                if m:
                    offsets.append(int(m.group(1)) * bs)
            if not offsets:
                d["dir_format"] = "unknown"
            elif any(o >= DIR2_FREE_OFFSET for o in offsets):
                d["dir_format"] = "node"
            elif any(o >= DIR2_LEAF_OFFSET for o in offsets):
                d["dir_format"] = "leaf"
            else:
                d["dir_format"] = "block"
        if f"b{ino}" in ans:
            level = fields(ans[f"b{ino}"]).get("u3.bmbt.level")
            if level is not None:
                # The root in the inode is the top level; leaves are level 0.
                d["bmbt_height"] = int(level) + 1
    return info


def ag_heights(image: str) -> list:
    geo = geometry(image)
    cmds = []
    for ag in range(geo["agcount"]):
        cmds += [f"echo @@ {ag}", f"agf {ag}",
                 "print bnolevel cntlevel rmaplevel refcntlevel",
                 f"agi {ag}", "print level free_level"]
    ans = split_answers(run_xfs_db(image, cmds))
    out = []
    for ag in range(geo["agcount"]):
        f = fields(ans[str(ag)])
        out.append({
            "ag": ag,
            "bnobt": int(f["bnolevel"]),
            "cntbt": int(f["cntlevel"]),
            "inobt": int(f["level"]),
            "finobt": int(f.get("free_level", "0")),
            "rmapbt": int(f.get("rmaplevel", "0")),
            "refcountbt": int(f.get("refcntlevel", "0")),
        })
    return out


def cmd_heights(image: str, require: bool, manifest: str) -> int:
    heights = ag_heights(image)
    names = ["bnobt", "cntbt", "inobt", "finobt", "rmapbt", "refcountbt"]
    print("  AG  " + "  ".join(f"{n:>10}" for n in names))
    for h in heights:
        print(f"  {h['ag']:>2}  " + "  ".join(f"{h[n]:>10}" for n in names))
    deepest = None
    if manifest:
        with open(manifest, encoding="utf-8") as f:
            for line in f:
                o = json.loads(line)
                if "bmbt_height" in o and (deepest is None or
                                           o["bmbt_height"] > deepest["bmbt_height"]):
                    deepest = o
    if deepest:
        print(f"  deepest bmbt: {deepest['path']} (inode {deepest['ino']}): "
              f"height {deepest['bmbt_height']}, {deepest['nextents']} extents")
    if not require:
        return 0
    ok_ags = [h["ag"] for h in heights if all(h[n] >= 2 for n in names)]
    ok = bool(ok_ags) and deepest is not None and deepest["bmbt_height"] >= 2
    if ok:
        print(f"  AGs with every btree at height >= 2: {ok_ags}")
        return 0
    print("  ERROR: no AG has every btree at height >= 2, or no bmbt of height >= 2",
          file=sys.stderr)
    return 1


def cmd_formats(manifest: str) -> int:
    with open(manifest, encoding="utf-8") as f:
        objs = [json.loads(line) for line in f]
    counts: dict = {}
    for o in objs[1:]:
        if o["type"] == "dir":
            counts.setdefault(o["dir_format"], []).append((o["path"], o["entries"]))
    for fmt in ["shortform", "block", "leaf", "node", "unknown"]:
        if fmt in counts:
            ex = sorted(counts[fmt], key=lambda pe: -pe[1])[:3]
            desc = ", ".join(f"{p} ({n})" for p, n in ex)
            print(f"  {fmt:>9}: {len(counts[fmt]):>3} dirs, e.g. {desc}")
    attr: dict = {}
    for o in objs[1:]:
        if o.get("attr_format") not in (None, "empty", "none"):
            attr.setdefault(o["attr_format"], []).append(o["path"])
    for fmt, paths in sorted(attr.items()):
        print(f"  attr {fmt:>9}: {', '.join(sorted(set(paths))[:4])}")
    return 0


def main(argv: list) -> int:
    if len(argv) >= 3 and argv[1] == "heights":
        rest = argv[3:]
        require = "--require" in rest
        manifest = next((a for a in rest if a != "--require"), "")
        return cmd_heights(argv[2], require, manifest)
    if len(argv) == 3 and argv[1] == "formats":
        return cmd_formats(argv[2])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
