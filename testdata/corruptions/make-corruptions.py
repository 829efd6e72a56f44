#!/usr/bin/env python3
"""Build the oracle corruption corpus: fuzzed fields of the fixture images,
each stored as a byte patch with `xfs_repair -n`'s verdict.

Usage (any user, no mounts; needs xfsprogs, zstd, python3):

    make-corruptions.py [SET...]          generate sets (default: ag inode dir)
    make-corruptions.py list SET          print the case list without running it
    make-corruptions.py verify SET [--all] [--sample N]
                                          re-apply recorded patches to a fresh base
                                          and compare xfs_repair -n's exit status
    make-corruptions.py summary           rewrite summary.md from the .jsonl files
    make-corruptions.py reannotate SET    refresh the fields derived from the case
                                          list and the patches (block, crc), without
                                          running xfs_repair again

Options: -j N runs N cases at a time (default 1: the machine is shared);
--reroll draws new bytes for `fuzz random` cases instead of keeping the
recorded ones.

How a case is made, in the style of the fstests field fuzzers
(`_scratch_xfs_fuzz_metadata`): navigate xfs_db to a structure, list its
fields with `print`, and for each field apply each xfs_db fuzz verb (`fuzz -d`,
which rewrites the field and recomputes the CRC so the field checks are
exercised; `fuzz -c` for the crc field itself and for a sample of fields
left with a stale CRC). The corrupted image is compared with its base in
64 KiB chunks; every differing byte goes into the patch. A case whose fuzz
changes nothing (zeroes on a field that is already zero) or that xfs_db
refuses (add/sub on fields wider than 64 bits) is dropped and counted. Then
`xfs_repair -n` runs on the corrupted image (60 s timeout) and its exit
status and first verdict lines are recorded.

The case list is a pure function of the base images: fields come from
xfs_db's `print`, positions and fields picked by fixed rules, no randomness.
xfs_db seeds `fuzz random` from the clock, so the bytes it draws differ per
run; to keep regeneration idempotent, a `random` case whose id, commands and
base image are unchanged reuses the patch recorded last time (--reroll
redraws).

Outputs, in this directory: <set>.jsonl (one case per line), meta.json (base
image hashes, dropped cases, timing), summary.md. Scratch files go to
testdata/work/corruptions/ (git-ignored). The format is documented in
testdata/README.md ("Corruption corpus").
"""

import argparse
import concurrent.futures
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TESTDATA = os.path.dirname(HERE)
sys.path.insert(0, TESTDATA)
import xfsdb  # noqa: E402  (testdata/xfsdb.py: the shared xfs_db helpers)

IMAGES = os.path.join(TESTDATA, "images")
MANIFESTS = os.path.join(TESTDATA, "manifests")
WORK = os.path.join(TESTDATA, "work", "corruptions")
META = os.path.join(HERE, "meta.json")
SUMMARY = os.path.join(HERE, "summary.md")

SETS = ["ag", "inode", "dir"]
VERBS = ["zeroes", "ones", "firstbit", "middlebit", "lastbit", "add", "sub", "random"]

CHUNK = 64 << 10          # diff granularity
READ = 4 << 20            # read size while looking for differing chunks
MERGE_GAP = 8             # runs closer than this are merged into one patch entry
REPAIR_TIMEOUT = 60       # seconds
SUMMARY_LINES = 5         # verdict lines kept per case
SUMMARY_WIDTH = 160       # characters kept per verdict line

# ---------------------------------------------------------------------------
# Base images


class Bases:
    """Decompressed base images (once per run) and their geometry."""

    def __init__(self, root=WORK):
        self.dir = os.path.join(root, "base")
        self.paths = {}
        self.geo = {}
        self.hashes = {}

    def path(self, name):
        if name not in self.paths:
            os.makedirs(self.dir, exist_ok=True)
            src = os.path.join(IMAGES, f"{name}.img.zst")
            dst = os.path.join(self.dir, f"{name}.img")
            subprocess.run(["zstd", "-q", "-d", "-f", src, "-o", dst], check=True)
            self.paths[name] = dst
        return self.paths[name]

    def geometry(self, name):
        if name not in self.geo:
            g = xfsdb.geometry(self.path(name))
            self.geo[name] = g
        return self.geo[name]

    def sha256(self, name):
        if name not in self.hashes:
            h = hashlib.sha256()
            with open(self.path(name), "rb") as f:
                while True:
                    b = f.read(READ)
                    if not b:
                        break
                    h.update(b)
            self.hashes[name] = h.hexdigest()
        return self.hashes[name]


def manifest(name):
    with open(os.path.join(MANIFESTS, f"{name}.jsonl"), encoding="utf-8") as f:
        objs = [json.loads(line) for line in f]
    return objs[0], objs[1:]


# ---------------------------------------------------------------------------
# Reading xfs_db's `print`

ARRAY_KEY = re.compile(r"^(?P<name>[A-Za-z0-9_.]+?)\[(?P<lo>\d+)(?:-(?P<hi>\d+))?\]$")
ITEM = re.compile(r"(\d+):(\[[^\]]*\]|\S+)")


def parse_print(lines):
    """Parse the output of xfs_db `print` into entries.

    Scalars: {"key", "value"}. Arrays (`recs[1-166] = [a,b] 1:[..] ...`,
    `ptrs[1-11] = 1:5 2:7`, `bno[0-118] = 0:null ...`): {"key", "name", "lo",
    "hi", "sub" (subfield names or None), "items" {index: value or [values]}}.
    Struct-array items may continue on the following lines.
    """
    entries = []
    cur = None
    for line in lines:
        m = re.match(r"^(\S+) =(?: (.*))?$", line)
        if m:
            key, val = m.group(1), (m.group(2) or "").strip()
            e = {"key": key, "value": val}
            am = ARRAY_KEY.match(key)
            if am:
                e["name"] = am.group("name")
                e["lo"] = int(am.group("lo"))
                e["hi"] = int(am.group("hi") or am.group("lo"))
                e["sub"] = None
                rest = val
                if val.startswith("["):
                    close = val.index("]")
                    e["sub"] = val[1:close].split(",")
                    rest = val[close + 1:]
                e["items"] = {}
                add_items(e, rest)
            entries.append(e)
            cur = e
        elif cur is not None and "items" in cur:
            add_items(cur, line)
    return entries


def add_items(entry, text):
    found = ITEM.findall(text)
    if not found and text.strip() and entry["lo"] == entry["hi"]:
        # A one-element array prints its value bare: `u3.bmbt.ptrs[1] = 12397`.
        entry["items"][entry["lo"]] = text.strip()
    for idx, val in found:
        if val.startswith("["):
            entry["items"][int(idx)] = val[1:-1].split(",")
        else:
            entry["items"][int(idx)] = val


def spread(indices):
    """First, middle and last of a sorted list of indices (deduplicated)."""
    out = []
    for i in (indices[0], indices[len(indices) // 2], indices[-1]):
        if i not in out:
            out.append(i)
    return out


# Arrays of structures that xfs_db prints one field per line, with the index
# inside the key: `bu[3].name`, `u3.sfdir3.list[0].inumber.i4`, `lents[7].hashval`.
INDEXED_KEY = re.compile(r"^(?P<name>[^\[]+)\[(?P<idx>\d+)\](?P<rest>.*)$")


def expand_fields(entries, positions=None, only=None, skip=()):
    """Fuzzable fields of a printed structure: [(field, value before)].

    Every scalar field; of arrays, the elements at `positions[name]` (default:
    first, middle and last present), each subfield of a structure separately.
    Padding is skipped, as the fstests fuzzers do. `only` and `skip` hold
    field names, array names, or prefixes ending in "." (`core.`).
    """
    positions = positions or {}

    def matches(pattern, key, name):
        return pattern in (key, name) or (pattern.endswith(".") and key.startswith(pattern))

    def wanted(key, name):
        if only is not None and not any(matches(p, key, name) for p in only):
            return False
        return not any(matches(p, key, name) for p in skip)

    present = {}
    for e in entries:
        m = INDEXED_KEY.match(e["key"]) if "name" not in e else None
        if m:
            present.setdefault(m.group("name"), set()).add(int(m.group("idx")))
    chosen = {name: positions.get(name) or spread(sorted(idx)) for name, idx in present.items()}

    out = []
    for e in entries:
        if "pad" in e["key"]:
            continue
        if "name" not in e:
            key = e["key"]
            m = INDEXED_KEY.match(key)
            name = m.group("name") if m else key
            if m and int(m.group("idx")) not in chosen[name]:
                continue
            if wanted(key, name):
                out.append((key, e["value"]))
            continue
        name = e["name"]
        if not wanted(e["key"], name):
            continue
        idx = sorted(e["items"]) or list(range(e["lo"], e["hi"] + 1))
        for p in positions.get(name, spread(idx)):
            if p < e["lo"] or p > e["hi"]:
                continue
            item = e["items"].get(p)
            if e["sub"]:
                for i, s in enumerate(e["sub"]):
                    before = item[i] if isinstance(item, list) and i < len(item) else None
                    out.append((f"{name}[{p}].{s}", before))
            else:
                out.append((f"{name}[{p}]", item))
    return out


def print_structure(image, nav):
    """Run `nav` then `print` read-only; return (entries, raw lines)."""
    out = xfsdb.run_xfs_db(image, nav + ["print"])
    lines = out.splitlines()
    return parse_print(lines), lines


def scalar(entries, key):
    for e in entries:
        if e["key"] == key:
            return e["value"]
    raise KeyError(key)


def value_text(v):
    """A printed value without xfs_db's crc verdict ("0x156a9a9 (correct)")."""
    if v is None:
        return None
    if isinstance(v, list):
        v = ",".join(v)
    return re.sub(r" \((correct|bad)\)$", "", v)[:120]


def field_slug(field):
    return field.replace("]", "").replace("[", "").replace(".", "-").lower()


def _crc32c_table():
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


CRC32C_TABLE = _crc32c_table()


def crc32c(data):
    """CRC32c (Castagnoli) as XFS stores it: complemented, little-endian."""
    crc = 0xFFFFFFFF
    for b in data:
        crc = CRC32C_TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def crc_valid(block, crc_offset):
    """Whether a metadata block's stored CRC matches its contents."""
    stored = int.from_bytes(block[crc_offset:crc_offset + 4], "little")
    zeroed = bytes(block[:crc_offset]) + b"\0\0\0\0" + bytes(block[crc_offset + 4:])
    return crc32c(zeroed) == stored


STACK = re.compile(r"byte offset (\d+), length (\d+)")


def locate_block(image, nav):
    """The buffer xfs_db works on at `nav` and where its CRC is:
    {"offset", "length", "crc_offset"} (byte offset in the image, length,
    offset of the CRC within the block), or None if it has no CRC field.

    xfs_db prints the CRC's bytes as a big-endian number; the field is found
    by looking for those bytes in the block and checked by recomputing it."""
    out = xfsdb.run_xfs_db(image, nav + ["stack", "print"])
    m = STACK.search(out)
    if not m:
        raise RuntimeError(f"xfs_db stack at {nav}: {out[:200]}")
    offset, length = int(m.group(1)), int(m.group(2))
    crc = None
    for e in parse_print(out.splitlines()):
        if e["key"] == "crc" or e["key"].endswith(".crc"):
            crc = int(e["value"].split()[0], 16)
    if crc is None:
        return None
    with open(image, "rb") as f:
        f.seek(offset)
        block = f.read(length)
    want = crc.to_bytes(4, "big")
    at = block.find(want)
    while at >= 0 and not crc_valid(block, at):
        at = block.find(want, at + 1)
    if at < 0:
        raise RuntimeError(f"cannot find the CRC {crc:#x} of the block at {nav}")
    return {"offset": offset, "length": length, "crc_offset": at}


def patched_crc_state(base, block, patch):
    """"recomputed" if the block's CRC matches its contents after the patch,
    "bad" if not. Computed, not assumed: xfs_db's `fuzz -d` cannot recompute
    the CRC of a directory or attribute block whose magic it has just broken
    (it tells those block types apart by their magic), nor of an inode whose
    version it has changed (only v3 inodes have a CRC)."""
    start, length = block["offset"], block["length"]
    data = bytearray(base.at(start, length))
    for p in patch:
        b = bytes.fromhex(p["hex"])
        lo, hi = max(start, p["offset"]), min(start + length, p["offset"] + len(b))
        if lo < hi:
            data[lo - start:hi - start] = b[lo - p["offset"]:hi - p["offset"]]
    return "recomputed" if crc_valid(data, block["crc_offset"]) else "bad"


# ---------------------------------------------------------------------------
# Case lists


class CaseList:
    """Accumulates cases; ids must be unique."""

    def __init__(self, set_name, bases):
        self.set = set_name
        self.bases = bases
        self.cases = []
        self.ids = set()
        self.blocks = {}

    def block(self, base, nav):
        key = (base, tuple(nav))
        if key not in self.blocks:
            self.blocks[key] = locate_block(self.bases.path(base), nav)
        return self.blocks[key]

    def add(self, **case):
        case = dict(case)
        case["set"] = self.set
        if case["id"] in self.ids:
            raise RuntimeError(f"duplicate case id {case['id']}")
        self.ids.add(case["id"])
        self.cases.append(case)

    def structure(self, *, idprefix, base, structure, target, nav, fields, agno=None,
                  verbs=VERBS, badcrc_every=0, badcrc_verbs=("firstbit", "random"),
                  extra=None):
        """Cases for every (field, verb), fuzzed with -d (crc recomputed), the
        crc field itself with -c; plus a bad-CRC sample: every `badcrc_every`th
        non-crc field (0 = none) with `badcrc_verbs`, fuzzed with -c."""
        extra = dict(extra or {})
        if agno is None:
            agno = extra.pop("agno")
        extra["block"] = self.block(base, nav)
        plain = [f for f in fields if f[0] != "crc" and not f[0].endswith(".crc")]
        for field, before in fields:
            is_crc = field == "crc" or field.endswith(".crc")
            for verb in verbs:
                self.add(id=f"{idprefix}-{field_slug(field)}-{verb}", base=base,
                         structure=structure, agno=agno, target=target, **extra,
                         field=field, verb=verb, crc="bad" if is_crc else "recomputed",
                         xfs_db=nav + [f"fuzz {'-c' if is_crc else '-d'} {field} {verb}"],
                         before=value_text(before))
        if badcrc_every:
            for field, before in plain[::badcrc_every]:
                for verb in badcrc_verbs:
                    self.add(id=f"{idprefix}-{field_slug(field)}-{verb}-badcrc", base=base,
                             structure=structure, agno=agno, target=target, **extra,
                             field=field, verb=verb, crc="bad",
                             xfs_db=nav + [f"fuzz -c {field} {verb}"],
                             before=value_text(before))


def btree_block_target(bases, base, structure, agno, nav):
    """Print a btree block reached by `nav`; return (entries, label, level)."""
    image = bases.path(base)
    geo = bases.geometry(base)
    entries, _ = print_structure(image, nav)
    daddr = int(scalar(entries, "bno"))
    fsb = daddr * 512 // geo["blocksize"]
    agbno = fsb - agno * geo["agblocks"]
    level = int(scalar(entries, "level"))
    numrecs = int(scalar(entries, "numrecs"))
    if numrecs == 0:
        raise RuntimeError(f"{base} {structure} block via {nav} is empty")
    label = f"{structure} AG {agno} agbno {agbno} level {level} ({numrecs} entries)"
    return entries, label, level


def ag_cases(bases):
    """AG metadata: superblocks, AGF, AGFL, AGI and the six AG btrees."""
    cl = CaseList("ag", bases)
    base = "rmapbt"
    img = bases.path(base)

    # Superblocks: every field. The primary with every verb; the secondary
    # (which xfs_repair compares with the primary) with four.
    for sbno, structure, verbs in ((0, "sb", VERBS),
                                   (1, "sb-secondary", ["zeroes", "ones", "firstbit", "add"])):
        nav = [f"sb {sbno}"]
        entries, _ = print_structure(img, nav)
        cl.structure(idprefix=structure, base=base, structure=structure, agno=sbno,
                     target=f"sb {sbno}", nav=nav, fields=expand_fields(entries),
                     verbs=verbs, badcrc_every=8)

    # AG headers of AG 1 (which has the most btree records in this image).
    agno = 1
    nav = [f"agf {agno}"]
    agf, _ = print_structure(img, nav)
    cl.structure(idprefix="agf", base=base, structure="agf", agno=agno, target=f"agf {agno}",
                 nav=nav, fields=expand_fields(agf), badcrc_every=6)

    first, last = int(scalar(agf, "flfirst")), int(scalar(agf, "fllast"))
    nav = [f"agfl {agno}"]
    agfl, _ = print_structure(img, nav)
    slots = agfl_slots(agfl, first, last)
    cl.structure(idprefix="agfl", base=base, structure="agfl", agno=agno, target=f"agfl {agno}",
                 nav=nav, fields=expand_fields(agfl, positions={"bno": slots}), badcrc_every=3)

    nav = [f"agi {agno}"]
    agi, _ = print_structure(img, nav)
    cl.structure(idprefix="agi", base=base, structure="agi", agno=agno, target=f"agi {agno}",
                 nav=nav, fields=expand_fields(agi), badcrc_every=6)

    # One leaf block of each AG btree: header fields and the first, middle and
    # last record. The rmapbt of AG 1 has two levels: take its second leaf,
    # which has both siblings. AG 1 has no refcount records; AG 2 has 17.
    leaves = [
        ("bnobt", 1, ["agf 1", "addr bnoroot"]),
        ("cntbt", 1, ["agf 1", "addr cntroot"]),
        ("inobt", 1, ["agi 1", "addr root"]),
        ("finobt", 1, ["agi 1", "addr free_root"]),
        ("rmapbt", 1, ["agf 1", "addr rmaproot", "addr ptrs[2]"]),
        ("refcountbt", 2, ["agf 2", "addr refcntroot"]),
    ]
    for structure, agno, nav in leaves:
        entries, label, level = btree_block_target(bases, base, structure, agno, nav)
        if level != 0:
            raise RuntimeError(f"{structure} via {nav} is not a leaf")
        cl.structure(idprefix=structure, base=base, structure=structure, agno=agno,
                     target=label, nav=nav, fields=expand_fields(entries), badcrc_every=8)

    # Node blocks: AG 1 of `large` has every btree at height 2. The header
    # fields whose meaning differs between nodes and leaves (the leaf headers
    # above have every field and verb), keys and pointers (first, middle,
    # last) with every verb, but the ten rmapbt key fields with six. Each
    # case on this 320 MiB image costs about twice one on the 64 MiB ones.
    base = "large"
    nodes = [
        ("bnobt", ["agf 1", "addr bnoroot"]),
        ("cntbt", ["agf 1", "addr cntroot"]),
        ("inobt", ["agi 1", "addr root"]),
        ("finobt", ["agi 1", "addr free_root"]),
        ("rmapbt", ["agf 1", "addr rmaproot"]),
        ("refcountbt", ["agf 1", "addr refcntroot"]),
    ]
    node_header = ["magic", "level", "numrecs", "leftsib", "rightsib", "bno", "crc"]
    node_header_verbs = ["zeroes", "ones", "firstbit", "add"]
    rmap_key_verbs = ["zeroes", "ones", "firstbit", "lastbit", "add", "sub"]
    for structure, nav in nodes:
        entries, label, level = btree_block_target(bases, base, structure, 1, nav)
        if level < 1:
            raise RuntimeError(f"large {structure} root is a leaf")
        prefix = f"large-{structure}-node"
        common = dict(base=base, structure=structure, agno=1, target=label, nav=nav)
        cl.structure(idprefix=prefix, **common, fields=expand_fields(entries, only=node_header),
                     verbs=node_header_verbs, badcrc_every=3, badcrc_verbs=("firstbit",))
        cl.structure(idprefix=prefix, **common, fields=expand_fields(entries, only=["keys"]),
                     verbs=rmap_key_verbs if structure == "rmapbt" else VERBS)
        cl.structure(idprefix=prefix, **common, fields=expand_fields(entries, only=["ptrs"]))

    # A few on other geometries and feature sets, reduced verb set.
    few = ["zeroes", "ones", "firstbit", "add"]
    # default: no rmapbt, so the AGF's rmap fields must stay zero.
    nav = ["agf 1"]
    entries, _ = print_structure(bases.path("default"), nav)
    cl.structure(idprefix="default-agf", base="default", structure="agf", agno=1,
                 target="agf 1", nav=nav, verbs=few,
                 fields=expand_fields(entries, only=["rmaproot", "rmaplevel", "rmapblocks",
                                                     "refcntroot", "refcntlevel",
                                                     "refcntblocks", "btreeblks"]))
    # nofinobt: the AGI's finobt fields must stay zero.
    nav = ["agi 1"]
    entries, _ = print_structure(bases.path("nofinobt"), nav)
    cl.structure(idprefix="nofinobt-agi", base="nofinobt", structure="agi", agno=1,
                 target="agi 1", nav=nav, verbs=few,
                 fields=expand_fields(entries, only=["free_root", "free_level", "fino_blocks",
                                                     "ino_blocks", "root", "level"]))
    nav = ["sb 0"]
    entries, _ = print_structure(bases.path("nofinobt"), nav)
    cl.structure(idprefix="nofinobt-sb", base="nofinobt", structure="sb", agno=0,
                 target="sb 0", nav=nav, verbs=few,
                 fields=expand_fields(entries, only=["features_ro_compat"]))
    # 1k: 1 KiB blocks, 512-byte sectors, a three-level rmapbt in AG 1.
    img1k = bases.path("1k")
    nav = ["sb 0"]
    entries, _ = print_structure(img1k, nav)
    cl.structure(idprefix="1k-sb", base="1k", structure="sb", agno=0, target="sb 0",
                 nav=nav, verbs=few,
                 fields=expand_fields(entries, only=["blocksize", "blocklog", "sectsize",
                                                     "sectlog", "inopblock", "inopblog",
                                                     "agblocks", "agblklog", "dirblklog"]))
    nav = ["agf 1"]
    agf1k, _ = print_structure(img1k, nav)
    first, last = int(scalar(agf1k, "flfirst")), int(scalar(agf1k, "fllast"))
    nav = ["agfl 1"]
    entries, _ = print_structure(img1k, nav)
    cl.structure(idprefix="1k-agfl", base="1k", structure="agfl", agno=1, target="agfl 1",
                 nav=nav, verbs=few,
                 fields=expand_fields(entries, positions={"bno": agfl_slots(entries, first,
                                                                            last)},
                                      only=["bno"]))
    for structure, nav in (("rmapbt", ["agf 1", "addr rmaproot"]),
                           ("rmapbt", ["agf 1", "addr rmaproot", "addr ptrs[1]"]),
                           ("bnobt", ["agf 1", "addr bnoroot"])):
        entries, label, level = btree_block_target(bases, "1k", structure, 1, nav)
        cl.structure(idprefix=f"1k-{structure}-l{level}", base="1k", structure=structure,
                     agno=1, target=label, nav=nav, verbs=few,
                     fields=expand_fields(entries, only=["level", "numrecs", "leftsib",
                                                         "rightsib", "bno", "keys",
                                                         "ptrs", "recs"],
                                          positions={"keys": [1], "ptrs": [1, 2],
                                                     "recs": [1]}))
    return cl.cases


def agfl_slots(entries, first, last):
    """AGFL slots to fuzz: first, middle and last in use, one not in use."""
    for e in entries:
        if e.get("name") == "bno":
            size = e["hi"] - e["lo"] + 1
            break
    else:
        raise RuntimeError("agfl print has no bno array")
    used = last - first + 1 if last >= first else size - first + last + 1
    mid = (first + used // 2) % size
    unused = (last + 1) % size
    out = []
    for s in (first, mid, last, unused):
        if s not in out:
            out.append(s)
    return out


class Files:
    """Inode numbers and manifest facts of a base image, by path."""

    def __init__(self, bases, base):
        self.base = base
        self.image = bases.path(base)
        header, objs = manifest(base)
        self.header = header
        self.by_path = {o["path"]: o for o in objs if "ino" in o and o["type"] != "xattr"}
        out = xfsdb.run_xfs_db(self.image, ["sb 0", "print agblklog inopblog"])
        f = xfsdb.fields(out.splitlines())
        self.ino_agshift = int(f["agblklog"]) + int(f["inopblog"])

    def ino(self, path):
        return self.by_path[path]["ino"]

    def agno(self, ino):
        return ino >> self.ino_agshift

    def where(self, path):
        """Case keys locating an inode."""
        ino = self.ino(path)
        return {"agno": self.agno(ino), "ino": ino, "path": path}


def positions_with_free(entries, array, used_key, free_key):
    """Positions in a directory data block's entry array: the first, middle
    and last entry plus the first free (unused) entry, if any."""
    used, free = set(), set()
    for e in entries:
        m = INDEXED_KEY.match(e["key"])
        if m and m.group("name") == array:
            i = int(m.group("idx"))
            if m.group("rest") == "." + used_key:
                used.add(i)
            elif m.group("rest") == "." + free_key:
                free.add(i)
    allidx = sorted(used | free)
    out = spread(allidx)
    if free:
        f = min(free)
        if f not in out:
            out.insert(1, f)
    return out


def add_inode_target(cl, files, *, idprefix, structure, path, nav=(), what=None,
                     verbs=VERBS, only=None, skip=(), positions=None, badcrc_every=0):
    """Cases for a structure reached from inode `path` by `nav` (nothing: the
    inode itself); returns the printed entries."""
    ino = files.ino(path)
    full = [f"inode {ino}"] + list(nav)
    entries, _ = print_structure(files.image, full)
    if not entries:
        raise RuntimeError(f"{path}: xfs_db printed nothing at {full}")
    target = f"inode {ino} ({path})" + (f" {what}" if what else "")
    cl.structure(idprefix=idprefix, base=files.base, structure=structure,
                 extra=files.where(path), target=target, nav=full,
                 fields=expand_fields(entries, only=only, skip=skip, positions=positions),
                 verbs=verbs, badcrc_every=badcrc_every)
    return entries


INODE_CORE = ["core.", "v3.", "next_unlinked"]
FEW = ["zeroes", "ones", "firstbit", "add"]
RMAP_VERBS = ["zeroes", "ones", "firstbit", "add", "sub"]


def inode_cases(bases):
    """Inode cores, data fork mappings (extent lists and bmbt blocks) and the
    rmapbt records of file extents."""
    cl = CaseList("inode", bases)
    base = "rmapbt"
    files = Files(bases, base)

    # Every core field of inodes of each kind: a regular file with every verb,
    # the others with four.
    kinds = [
        ("file", "/files/small/small-21", VERBS),
        ("dir", "/dirs/node/leaf", FEW),
        ("symlink", "/links/long", FEW),
        ("rootdir", "/", FEW),
        ("bmbt-file", "/files/fragmented-a", FEW),
    ]
    for kind, path, verbs in kinds:
        add_inode_target(cl, files, idprefix=f"inode-{kind}", structure="inode", path=path,
                         only=INODE_CORE, verbs=verbs, badcrc_every=10)

    # Extent records in the inode: /files/sparse has seven, some unwritten.
    add_inode_target(cl, files, idprefix="bmbt-extents", structure="bmbt", path="/files/sparse",
                     what="data fork extents", only=["u3.bmx"], badcrc_every=4)

    # A two-level bmbt: the root in the inode, then a leaf block.
    path = "/files/fragmented-a"
    add_inode_target(cl, files, idprefix="bmbt-root", structure="bmbt", path=path,
                     what="bmbt root in the inode", only=["u3.bmbt."])
    nav = [f"inode {files.ino(path)}", "addr u3.bmbt.ptrs[1]"]
    entries, label = bmbt_block_target(files, nav, path)
    cl.structure(idprefix="bmbt-leaf", base=base, structure="bmbt", extra=files.where(path),
                 target=label, nav=nav, fields=expand_fields(entries), badcrc_every=6)

    # A btree-format directory's bmbt root.
    add_inode_target(cl, files, idprefix="bmbt-dir-root", structure="bmbt", path="/dirs/node",
                     what="bmbt root in the inode", only=["u3.bmbt."], verbs=FEW)

    # rmapbt records owned by files.
    owned = [
        ("data", "/files/small/small-21", lambda r: r["attrfork"] == "0" and r["bmbtblock"] == "0"),
        ("sparse", "/files/sparse", lambda r: r["offset"] != "0" and r["extentflag"] == "0"),
        ("unwritten", "/files/unwritten", lambda r: r["extentflag"] == "1"),
        ("bmbt-block", "/files/fragmented-a", lambda r: r["bmbtblock"] == "1"),
        ("attr", "/xattrs/leaf", lambda r: r["attrfork"] == "1"),
        ("dir-leaf", "/dirs/node/leaf",
         lambda r: int(r["offset"]) == xfsdb.DIR2_LEAF_OFFSET // files.header["blocksize"]),
    ]
    leaves = rmap_leaves(files)
    for kind, path, pred in owned:
        ino = files.ino(path)
        found = None
        for agno, nav, sub, items in leaves:
            for idx in sorted(items):
                rec = dict(zip(sub, items[idx]))
                if rec.get("owner") == str(ino) and pred(rec):
                    found = (agno, nav, idx)
                    break
            if found:
                break
        if not found:
            raise RuntimeError(f"no rmapbt record of {path} ({kind})")
        agno, nav, idx = found
        entries, label, _ = btree_block_target(bases, base, "rmapbt", agno, nav)
        cl.structure(idprefix=f"rmapbt-{kind}", base=base, structure="rmapbt", agno=agno,
                     extra={"ino": ino, "path": path}, target=f"{label} record {idx} ({path})",
                     nav=nav, verbs=RMAP_VERBS,
                     fields=expand_fields(entries, only=["recs"], positions={"recs": [idx]}))

    # A three-level bmbt on `large`: the root in the inode and a node block.
    lfiles = Files(bases, "large")
    path = "/stress/sparse-btree"
    add_inode_target(cl, lfiles, idprefix="large-bmbt-root", structure="bmbt", path=path,
                     what="bmbt root in the inode", only=["u3.bmbt."], verbs=FEW)
    nav = [f"inode {lfiles.ino(path)}", "addr u3.bmbt.ptrs[1]"]
    entries, label = bmbt_block_target(lfiles, nav, path)
    if "level 0" in label:
        raise RuntimeError(f"{path}: expected a node below the root")
    cl.structure(idprefix="large-bmbt-node", base="large", structure="bmbt",
                 extra=lfiles.where(path), target=label, nav=nav, verbs=FEW,
                 fields=expand_fields(entries, only=["magic", "level", "numrecs", "leftsib",
                                                     "rightsib", "bno", "owner", "crc"]))
    cl.structure(idprefix="large-bmbt-node", base="large", structure="bmbt",
                 extra=lfiles.where(path), target=label, nav=nav,
                 fields=expand_fields(entries, only=["keys", "ptrs"]))
    return cl.cases


def bmbt_block_target(files, nav, path):
    entries, _ = print_structure(files.image, nav)
    level = int(scalar(entries, "level"))
    numrecs = int(scalar(entries, "numrecs"))
    daddr = int(scalar(entries, "bno"))
    if numrecs == 0:
        raise RuntimeError(f"{path}: empty bmbt block")
    return entries, (f"bmbt block of inode {files.ino(path)} ({path}) daddr {daddr} "
                     f"level {level} ({numrecs} entries)")


def rmap_leaves(files):
    """Every rmapbt leaf of every AG: [(agno, nav, subfields, items)]."""
    out = []
    for agno in range(files.header["agcount"]):
        stack = [[f"agf {agno}", "addr rmaproot"]]
        while stack:
            nav = stack.pop(0)
            entries, _ = print_structure(files.image, nav)
            level = int(scalar(entries, "level"))
            for e in entries:
                if level == 0 and e.get("name") == "recs":
                    out.append((agno, nav, e["sub"], e["items"]))
                elif level > 0 and e.get("name") == "ptrs":
                    stack += [nav + [f"addr ptrs[{i}]"] for i in sorted(e["items"])]
    return out


def dir_cases(bases):
    """Directories of each format, extended attributes, symlinks, link counts."""
    cl = CaseList("dir", bases)
    base = "rmapbt"
    files = Files(bases, base)
    img = files.image
    leaf_db = xfsdb.DIR2_LEAF_OFFSET // files.header["blocksize"]
    free_db = xfsdb.DIR2_FREE_OFFSET // files.header["blocksize"]

    def add(idprefix, structure, path, nav, what, skip=("data",), **kw):
        # Remote blocks end in their payload (`data`): user data, not metadata.
        return add_inode_target(cl, files, idprefix=idprefix, structure=structure, path=path,
                                nav=nav, what=what, skip=skip, **kw)

    # Shortform: in the inode.
    add("dir-sf", "dir", "/dirs/node/leaf/block/shortform", [], "shortform directory",
        only=["u3.sfdir3."])
    add("dir-sf-root", "dir", "/", [], "shortform directory", verbs=FEW,
        only=["u3.sfdir3.hdr."])

    # Block format: one block with entries, leaf and tail.
    path = "/dirs/node/leaf/block"
    entries, _ = print_structure(img, [f"inode {files.ino(path)}", "dblock 0"])
    add("dir-block", "dir", path, ["dblock 0"], "directory block 0", badcrc_every=8,
        positions={"bu": positions_with_free(entries, "bu", "inumber", "freetag")})

    # Leaf format: a data block and the leaf block.
    path = "/dirs/node/leaf"
    entries, _ = print_structure(img, [f"inode {files.ino(path)}", "dblock 0"])
    add("dir-data", "dir", path, ["dblock 0"], "directory data block 0", badcrc_every=8,
        positions={"du": positions_with_free(entries, "du", "inumber", "freetag")})
    add("dir-leaf", "dir", path, [f"dblock {leaf_db}"], f"directory leaf block {leaf_db}",
        badcrc_every=6)

    # Node format: the da node, a leafn block, the free index block.
    path = "/dirs/node"
    nodes = add("dir-node", "dir", path, [f"dblock {leaf_db}"],
                f"directory da node block {leaf_db}", badcrc_every=6)
    first_leafn = None
    for e in nodes:
        if e.get("name") == "nbtree":
            first_leafn = int(e["items"][min(e["items"])][1])
    if first_leafn is None:
        raise RuntimeError(f"{path}: no nbtree in the da node")
    add("dir-leafn", "dir", path, [f"dblock {first_leafn}"],
        f"directory leafn block {first_leafn}", verbs=FEW, badcrc_every=6)
    add("dir-free", "dir", path, [f"dblock {free_db}"], f"directory free block {free_db}",
        badcrc_every=6)

    # Extended attributes.
    add("xattr-sf", "xattr", "/xattrs/local", [], "shortform attr fork", only=["a.sfattr."])
    add("xattr-leaf", "xattr", "/xattrs/leaf", ["ablock 0"], "attr leaf block 0",
        badcrc_every=6)
    add("xattr-node", "xattr", "/xattrs/node", ["ablock 0"], "attr da node block 0",
        badcrc_every=6)
    remote = add("xattr-rleaf", "xattr", "/xattrs/remote", ["ablock 0"],
                 "attr leaf block 0 with remote values", verbs=FEW, only=["entries", "nvlist"])
    valueblk = None
    for e in remote:
        m = INDEXED_KEY.match(e["key"])
        if m and m.group("rest") == ".valueblk":
            valueblk = int(e["value"], 0)
            break
    if valueblk is None:
        raise RuntimeError("/xattrs/remote: no remote value")
    add("xattr-rmt", "xattr", "/xattrs/remote", [f"ablock {valueblk}"],
        f"remote attr value block {valueblk}", badcrc_every=3)

    # Symlinks: a remote one's block header, an inline one's target.
    add("symlink-rmt", "symlink", "/links/long", ["dblock 0"], "remote symlink block 0",
        badcrc_every=3)
    add("symlink-inline", "symlink", "/links/short", [], "inline symlink", verbs=FEW,
        only=["u3.symlink"], skip=())

    # Link counts.
    for kind, path in (("hardlinked", "/hardlinks/one/original"), ("file", "/files/small/small-03"),
                       ("dir", "/dirs/node/leaf"), ("rootdir", "/")):
        if path not in files.by_path:
            raise RuntimeError(f"{path} not in the manifest")
        add(f"nlinks-{kind}", "nlinks", path, [], "link count", only=["core.nlinkv2"])
    return cl.cases


CASE_BUILDERS = {"ag": ag_cases, "inode": inode_cases, "dir": dir_cases}

# ---------------------------------------------------------------------------
# Running cases


def byte_runs(a, b, offset):
    """Runs of differing bytes between equal-length a and b, as (offset, bytes
    of b); runs separated by fewer than MERGE_GAP equal bytes are merged."""
    runs = []
    start = end = None
    i = 0
    n = len(b)
    while i < n:
        if a[i] != b[i]:
            if start is None:
                start = i
            elif i - end > MERGE_GAP:
                runs.append((offset + start, bytes(b[start:end])))
                start = i
            end = i + 1
        i += 1
    if start is not None:
        runs.append((offset + start, bytes(b[start:end])))
    return runs


class BaseData:
    """A base image held in memory as READ-sized pieces, for fast comparison."""

    def __init__(self, path):
        self.pieces = []
        with open(path, "rb") as f:
            while True:
                b = f.read(READ)
                if not b:
                    break
                self.pieces.append(b)
        self.size = sum(len(p) for p in self.pieces)

    def at(self, off, n):
        """The n bytes at offset off (fewer at the end of the image)."""
        out = b""
        while n > 0 and off < self.size:
            p = self.pieces[off // READ]
            b = p[off % READ:off % READ + n]
            out += b
            off += len(b)
            n -= len(b)
        return out


def diff_image(base, work_path):
    """Compare a work image with its base; return (runs, chunks) where chunks
    are the offsets of the 64 KiB chunks that differ."""
    runs, chunks = [], []
    buf = bytearray(READ)
    with open(work_path, "rb", buffering=0) as f:
        off = 0
        for piece in base.pieces:
            n = f.readinto(buf)
            if n != len(piece):
                raise RuntimeError(f"{work_path}: short read at {off}")
            if piece != buf if n == READ else piece != buf[:n]:
                b = bytes(buf[:n])
                for i in range(0, n, CHUNK):
                    ca, cb = piece[i:i + CHUNK], b[i:i + CHUNK]
                    if ca != cb:
                        chunks.append(off + i)
                        runs += byte_runs(ca, cb, off + i)
            off += n
        if f.read(1):
            raise RuntimeError(f"{work_path}: grew beyond {base.size} bytes")
    return runs, chunks


def apply_patch(path, patch):
    with open(path, "r+b") as f:
        for p in patch:
            f.seek(p["offset"])
            f.write(bytes.fromhex(p["hex"]))


def restore(base, work_path, offsets):
    """Copy the base's bytes back over the given chunk offsets."""
    with open(work_path, "r+b") as f:
        for off in offsets:
            f.seek(off)
            f.write(base.at(off, CHUNK))


CHATTER = [
    re.compile(r"^\s+- "),
    re.compile(r"^\s*$"),
    re.compile(r"^\.+$"),
    re.compile(r"^Cannot get host filesystem geometry"),
    re.compile(r"^Repair may fail if there is a sector size mismatch"),
    re.compile(r"^the image and the host filesystem\.$"),
    re.compile(r"^No modify flag set, skipping"),
]
PHASE = re.compile(r"^Phase (\d+)")

# xfs_repair prints the address of the code that detected a corruption
# ("Metadata corruption detected at 0x55e8308bc5c3, xfs_agf block ..."); it
# changes with every run (ASLR), so it is cut out.
CODE_ADDRESS = re.compile(r" at 0x[0-9a-f]+,")


# A progress line ("        - agno = 1") written by one thread while another
# was half way through a message: "bad attribute format -1 in inode 128,
#         - agno = 1" and then "would reset value" on the next line.
SPLICED_PROGRESS = re.compile(r"^(?P<head>.*\S)\s* {8}- .*$")


def unsplice(lines):
    """Undo the commonest interleaving of xfs_repair's threads: a progress
    line landing inside a message. The message's tail is the next line that
    is not chatter; an empty line means the message was already whole and
    only its newline came late."""
    out = []
    pending = None
    for line in lines:
        m = SPLICED_PROGRESS.match(line)
        if m and not line.startswith(" "):
            if pending is not None:
                out.append(pending)
            pending = m.group("head")
            continue
        if pending is not None and not line.strip():
            # The message was whole; this is its newline, written separately.
            out.append(pending)
            pending = None
            continue
        if pending is not None and not any(p.search(line) for p in CHATTER):
            out.append(pending + " " + line.lstrip())
            pending = None
            continue
        out.append(line)
    if pending is not None:
        out.append(pending)
    return out


def verdict_lines(output):
    """The lines of xfs_repair output that are not progress chatter, in a
    reproducible order: by phase, sorted within a phase (xfs_repair scans AGs
    in parallel, so the order of lines within a phase varies between runs),
    without repeats."""
    phases = {}
    phase = 0
    for line in unsplice(output.splitlines()):
        m = PHASE.match(line)
        if m:
            phase = int(m.group(1))
            continue
        if any(p.search(line) for p in CHATTER):
            continue
        phases.setdefault(phase, set()).add(CODE_ADDRESS.sub(",", line.rstrip()))
    return [l for ph in sorted(phases) for l in sorted(phases[ph])]


def run_repair(image):
    """Run `xfs_repair -n`; return the xfs_repair_n record."""
    try:
        p = subprocess.run(["xfs_repair", "-n", image], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=REPAIR_TIMEOUT)
    except subprocess.TimeoutExpired as e:
        lines = verdict_lines((e.output or b"").decode("utf-8", "replace"))
        return {"exit": None, "timeout": True,
                "summary": [l[:SUMMARY_WIDTH] for l in lines[:SUMMARY_LINES]]}
    lines = verdict_lines(p.stdout.decode("utf-8", "replace"))
    rec = {"exit": p.returncode, "summary": [l[:SUMMARY_WIDTH] for l in lines[:SUMMARY_LINES]]}
    if len(lines) > SUMMARY_LINES:
        rec["more"] = len(lines) - SUMMARY_LINES
    if p.returncode < 0:
        rec["crashed"] = signal.Signals(-p.returncode).name
    return rec


REFUSALS = re.compile(r"unable to fuzz|unable to parse|parsing error|Unknown fuzz|"
                      r"Cannot recalculate|no handler|bad option|Usage:|not found|"
                      r"write error|verifier failed")


class Worker:
    """One work copy per base image; restored to the base after each case."""

    def __init__(self, bases_dir):
        self.bases_dir = bases_dir
        self.dir = os.path.join(WORK, f"w{os.getpid()}")
        self.data = {}
        self.work = {}

    def image(self, base):
        if base not in self.work:
            os.makedirs(self.dir, exist_ok=True)
            src = os.path.join(self.bases_dir, f"{base}.img")
            self.data[base] = BaseData(src)
            dst = os.path.join(self.dir, f"{base}.img")
            shutil.copyfile(src, dst)
            self.work[base] = dst
        return self.work[base], self.data[base]

    def run(self, case, reuse_patch=None, seen=None):
        """Make one case; `seen` maps patches already made in this group to
        their case ids, so that a verb giving the same bytes as an earlier
        one (every bit verb on a one-bit field) is dropped as a duplicate."""
        t0 = time.monotonic()
        work, data = self.image(case["base"])
        if reuse_patch is not None:
            apply_patch(work, reuse_patch)
            xout = ""
            after = case.get("after")
        else:
            args = ["xfs_db", "-x"]
            for c in case["xfs_db"]:
                args += ["-c", c]
            p = subprocess.run(args + [work], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, errors="replace")
            xout = p.stdout
            after = None
            field = case.get("field")
            for line in xout.splitlines():
                m = re.match(r"^(\S+) = (.*)$", line)
                if m and field and m.group(1) == field:
                    after = m.group(2).strip()
        runs, chunks = diff_image(data, work)
        restore(data, work, chunks)
        result = {"id": case["id"]}
        if not runs:
            m = REFUSALS.search(xout)
            if m:
                line = next(l for l in xout.splitlines() if REFUSALS.search(l))
                result["dropped"] = "refused"
                result["message"] = line.strip()
            else:
                result["dropped"] = "unchanged"
            return result
        patch = [{"offset": off, "hex": b.hex()} for off, b in runs]
        sig = patch_signature(case["base"], patch)
        if seen is not None:
            if sig in seen:
                result["dropped"] = "duplicate"
                result["of"] = seen[sig]
                return result
            seen[sig] = case["id"]
        result["patch"] = patch
        if case.get("block"):
            result["crc"] = patched_crc_state(data, case["block"], patch)
        if after is not None:
            result["after"] = value_text(after)
        apply_patch(work, patch)
        try:
            result["xfs_repair_n"] = run_repair(work)
        finally:
            restore(data, work, chunks)
        result["seconds"] = time.monotonic() - t0
        return result


def patch_signature(base, patch):
    return (base, tuple((p["offset"], p["hex"]) for p in patch))


_WORKER = None


def _worker_init(bases_dir):
    global _WORKER
    _WORKER = Worker(bases_dir)


def _worker_run_group(group):
    """Run the cases of one target in order (see Worker.run for `seen`)."""
    seen = {}
    return [_WORKER.run(case, reuse, seen) for case, reuse in group]


# ---------------------------------------------------------------------------
# Files


def load_jsonl(path):
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def load_meta():
    if os.path.exists(META):
        with open(META, encoding="utf-8") as f:
            return json.load(f)
    return {"format": 1, "bases": {}, "sets": {}}


def write_meta(meta):
    with open(META, "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=1, sort_keys=True)
        f.write("\n")


KEY_ORDER = ["id", "set", "base", "structure", "agno", "ino", "path", "target", "block",
             "field", "verb", "crc", "xfs_db", "before", "after", "patch", "xfs_repair_n"]


def ordered(case):
    out = {k: case[k] for k in KEY_ORDER if k in case and case[k] is not None}
    for k, v in case.items():
        if k not in out and v is not None and k != "seconds":
            out[k] = v
    return out


def xfsprogs_version():
    out = subprocess.run(["xfs_repair", "-V"], capture_output=True, text=True).stdout
    return out.strip().split()[-1]


# ---------------------------------------------------------------------------
# Commands


def check_verbs(image):
    """The fuzz verbs we use must be the ones this xfs_db offers (fstests
    asks xfs_db for the list; we fix the order and check it)."""
    scratch = os.path.join(WORK, "verbs.img")
    shutil.copyfile(image, scratch)  # -x opens read-write; never on a base
    p = subprocess.run(["xfs_db", "-x", "-c", "sb 0", "-c", "fuzz", scratch],
                       capture_output=True, text=True)
    os.unlink(scratch)
    m = re.search(r"Fuzz commands: (.*)\.", p.stdout + p.stderr)
    if m:
        offered = [v.strip() for v in m.group(1).split(",")]
        if sorted(offered) != sorted(VERBS):
            raise RuntimeError(f"xfs_db fuzz verbs {offered} != {VERBS}")
    else:
        raise RuntimeError(f"xfs_db did not list its fuzz verbs: {p.stdout + p.stderr}")


def generate(set_name, jobs, reroll):
    t0 = time.monotonic()
    bases = Bases()
    check_verbs(bases.path("empty"))
    print(f"== {set_name}: building the case list", flush=True)
    cases = CASE_BUILDERS[set_name](bases)
    print(f"   {len(cases)} candidate cases on {sorted({c['base'] for c in cases})}", flush=True)

    meta = load_meta()
    old = {c["id"]: c for c in load_jsonl(os.path.join(HERE, f"{set_name}.jsonl"))}
    base_hash = {b: bases.sha256(b) for b in sorted({c["base"] for c in cases})}
    # `fuzz random` draws new bytes every run: keep last run's outcome of a
    # random case (its bytes, or its being dropped) while its base is the same.
    reuse, carried = {}, {}
    prev = meta["sets"].get(set_name, {})
    prev_dropped = {i: {"dropped": "unchanged"} for i in prev.get("dropped_unchanged", [])}
    prev_dropped.update({i: {"dropped": "duplicate", "of": of}
                         for i, of in prev.get("dropped_duplicate", {}).items()})
    if not reroll:
        for c in cases:
            same_base = (meta["bases"].get(c["base"], {}).get("sha256")
                         == base_hash[c["base"]])
            if c["verb"] != "random" or not same_base:
                continue
            o = old.get(c["id"])
            if o is not None and o["xfs_db"] == c["xfs_db"]:
                reuse[c["id"]] = o["patch"]
                c["after"] = o.get("after")
            elif c["id"] in prev_dropped:
                carried[c["id"]] = dict(prev_dropped[c["id"]], id=c["id"])
    if reuse or carried:
        print(f"   keeping last run's outcome of {len(reuse) + len(carried)} `fuzz random` "
              f"cases ({len(carried)} of them dropped)", flush=True)

    # Group by base so each worker keeps few work copies, and by target so
    # that duplicate detection does not depend on the number of workers.
    order = sorted(range(len(cases)), key=lambda i: (cases[i]["base"], i))
    groups = []
    for i in order:
        c = cases[i]
        if c["id"] in carried:
            continue
        key = (c["base"], tuple(c["xfs_db"][:-1]))
        if not groups or groups[-1][0] != key:
            groups.append((key, []))
        groups[-1][1].append((c, reuse.get(c["id"])))
    results = dict(carried)
    done = 0
    tally = {"flagged": 0, "clean": 0}
    total = len(cases) - len(carried)

    def report(res):
        nonlocal done
        done += 1
        results[res["id"]] = res
        r = res.get("xfs_repair_n")
        if r:
            tally["flagged" if r["exit"] != 0 else "clean"] += 1
            if r.get("crashed") or r.get("timeout"):
                what = f"crashed ({r['crashed']})" if r.get("crashed") else "timed out"
                print(f"   !! {res['id']}: xfs_repair -n {what}", flush=True)
        elif res.get("dropped") == "refused":
            print(f"   -- {res['id']}: xfs_db refused: {res['message']}", flush=True)
        if done % 100 == 0 or done == total:
            el = time.monotonic() - t0
            print(f"   [{done}/{total}] {el:6.0f}s  flagged {tally['flagged']}, "
                  f"clean {tally['clean']}, dropped {done - tally['flagged'] - tally['clean']}",
                  flush=True)

    if jobs <= 1:
        _worker_init(bases.dir)
        for _, g in groups:
            for res in _worker_run_group(g):
                report(res)
    else:
        with concurrent.futures.ProcessPoolExecutor(
                max_workers=jobs, initializer=_worker_init, initargs=(bases.dir,)) as ex:
            for rs in ex.map(_worker_run_group, [g for _, g in groups]):
                for res in rs:
                    report(res)
    for d in os.listdir(WORK):
        if re.match(r"^w\d+$", d):
            shutil.rmtree(os.path.join(WORK, d), ignore_errors=True)

    # Duplicates across targets (rare: overlapping fields of different
    # structures), in case-list order.
    seen = {}
    for c in cases:
        res = results[c["id"]]
        if "patch" in res:
            sig = patch_signature(c["base"], res["patch"])
            if sig in seen:
                results[c["id"]] = {"id": c["id"], "dropped": "duplicate", "of": seen[sig]}
            else:
                seen[sig] = c["id"]

    kept, dropped = [], {"unchanged": [], "refused": {}, "duplicate": {}}
    for c in cases:
        res = results[c["id"]]
        if "dropped" in res:
            if res["dropped"] == "refused":
                dropped["refused"][c["id"]] = res["message"]
            elif res["dropped"] == "duplicate":
                dropped["duplicate"][c["id"]] = res["of"]
            else:
                dropped["unchanged"].append(c["id"])
            continue
        c = dict(c)
        c.update({k: v for k, v in res.items() if k not in ("id", "seconds")})
        kept.append(ordered(c))
    path = os.path.join(HERE, f"{set_name}.jsonl")
    with open(path, "w", encoding="utf-8") as f:
        for c in kept:
            f.write(json.dumps(c, separators=(",", ":"), ensure_ascii=False) + "\n")
    elapsed = time.monotonic() - t0
    for b, h in base_hash.items():
        meta["bases"][b] = {"sha256": h, "size": os.path.getsize(bases.path(b))}
    meta["sets"][set_name] = {
        "cases": len(kept),
        "candidates": len(cases),
        "dropped_unchanged": dropped["unchanged"],
        "dropped_refused": dropped["refused"],
        "dropped_duplicate": dropped["duplicate"],
        "xfsprogs": xfsprogs_version(),
        "generation_seconds": round(elapsed),
        "jobs": jobs,
    }
    write_meta(meta)
    flagged = sum(1 for c in kept if c["xfs_repair_n"]["exit"] != 0)
    print(f"== {set_name}: {len(kept)} cases written to {os.path.relpath(path)} "
          f"({flagged} flagged by xfs_repair -n, {len(kept) - flagged} not); "
          f"dropped {len(dropped['unchanged'])} unchanged, {len(dropped['refused'])} refused, "
          f"{len(dropped['duplicate'])} duplicates; "
          f"{elapsed:.0f}s", flush=True)
    write_summary()


def reannotate(set_name):
    """Refresh the fields derived from the case list and the recorded patches
    (`block`, `crc`, `target`, `before`) without running xfs_db or xfs_repair
    on corrupted images again."""
    path = os.path.join(HERE, f"{set_name}.jsonl")
    recorded = load_jsonl(path)
    bases = Bases()
    fresh = {c["id"]: c for c in CASE_BUILDERS[set_name](bases)}
    data = {}
    out = []
    for r in recorded:
        c = fresh.get(r["id"])
        if c is None or c["xfs_db"] != r["xfs_db"]:
            raise RuntimeError(f"{r['id']}: not in the current case list; regenerate the set")
        if r["base"] not in data:
            data[r["base"]] = BaseData(bases.path(r["base"]))
        merged = dict(c)
        merged.update({k: v for k, v in r.items()
                       if k not in ("block", "crc", "target", "before")})
        if c.get("block"):
            merged["crc"] = patched_crc_state(data[r["base"]], c["block"], r["patch"])
        out.append(ordered(merged))
    with open(path, "w", encoding="utf-8") as f:
        for c in out:
            f.write(json.dumps(c, separators=(",", ":"), ensure_ascii=False) + "\n")
    print(f"{set_name}: {len(out)} cases re-annotated")
    write_summary()


def list_cases(set_name):
    for c in CASE_BUILDERS[set_name](Bases()):
        print(c["id"], "|", c["target"], "|", " ; ".join(c["xfs_db"]))


def verify(set_name, sample, everything):
    """Apply recorded patches to a freshly decompressed base and compare the
    exit status of xfs_repair -n with the recorded one."""
    cases = load_jsonl(os.path.join(HERE, f"{set_name}.jsonl"))
    if not cases:
        print(f"no cases in {set_name}.jsonl", file=sys.stderr)
        return 1
    meta = load_meta()
    if everything:
        chosen = cases
    else:
        step = max(1, len(cases) // sample)
        chosen = cases[::step][:sample]
        # Plus the first case of every (base, structure) not yet covered.
        seen = {(c["base"], c["structure"]) for c in chosen}
        for c in cases:
            if (c["base"], c["structure"]) not in seen:
                chosen.append(c)
                seen.add((c["base"], c["structure"]))
    root = os.path.join(WORK, "verify")
    shutil.rmtree(root, ignore_errors=True)
    bases = Bases(root)
    bad = 0
    for name in sorted({c["base"] for c in chosen}):
        want = meta["bases"].get(name, {}).get("sha256")
        if want != bases.sha256(name):
            print(f"base {name}: sha256 {bases.sha256(name)} != recorded {want}")
            bad += 1
    notes = 0
    worker = Worker(bases.dir)
    worker.dir = os.path.join(root, "work")
    for i, c in enumerate(chosen, 1):
        work, data = worker.image(c["base"])
        for p in c["patch"]:
            old = data.at(p["offset"], len(p["hex"]) // 2)
            if old.hex() == p["hex"]:
                print(f"{c['id']}: patch run at {p['offset']} equals the base")
                bad += 1
        apply_patch(work, c["patch"])
        r = run_repair(work)
        runs, chunks = diff_image(data, work)
        restore(data, work, chunks)
        status = "ok"
        if r["exit"] != c["xfs_repair_n"]["exit"]:
            status = "EXIT MISMATCH"
            bad += 1
        elif r["summary"] != c["xfs_repair_n"]["summary"]:
            # Threads of xfs_repair can interleave (even split) their lines,
            # so the summary is not always reproducible; the exit status is.
            status = f"ok (summary differs: {r['summary']})"
            notes += 1
        print(f"[{i}/{len(chosen)}] {c['id']}: recorded exit {c['xfs_repair_n']['exit']}, "
              f"now {r['exit']}: {status}", flush=True)
    shutil.rmtree(root, ignore_errors=True)
    print(f"verify {set_name}: {len(chosen)} cases, {bad} with a different exit status, "
          f"{notes} with a different summary")
    return 1 if bad else 0


def write_summary():
    meta = load_meta()
    out = ["# Corruption corpus summary", "",
           "Written by `make-corruptions.py` (do not edit). For each set, a matrix of",
           "structure (and base image, when not `rmapbt`) by fuzz verb: `flagged/cases`,",
           "where *flagged* means `xfs_repair -n` exited non-zero. A case that",
           "xfs_repair -n does not flag is undetected by the oracle: the checker is",
           "not required to flag it (it may, when it checks more than xfs_repair).", ""]
    total = total_clean = 0

    def flagged(c):
        return c["xfs_repair_n"]["exit"] != 0

    for s in SETS:
        cases = load_jsonl(os.path.join(HERE, f"{s}.jsonl"))
        if not cases:
            continue
        info = meta["sets"].get(s, {})
        verbs = [v for v in VERBS if any(c["verb"] == v for c in cases)]
        rows = []
        for c in cases:
            key = (c["structure"], c["base"])
            if key not in rows:
                rows.append(key)
        nflag = sum(1 for c in cases if flagged(c))
        total += len(cases)
        total_clean += len(cases) - nflag
        out += [f"## `{s}`", "",
                f"{len(cases)} cases, {nflag} flagged by `xfs_repair -n`, "
                f"{len(cases) - nflag} not. "
                f"Dropped: {len(info.get('dropped_unchanged', []))} that changed no byte, "
                f"{len(info.get('dropped_refused', {}))} refused by xfs_db, "
                f"{len(info.get('dropped_duplicate', {}))} that made the same bytes as an "
                "earlier case. "
                f"Generated in {info.get('generation_seconds', '?')} s "
                f"({info.get('jobs', 1)} job(s), xfsprogs {info.get('xfsprogs', '?')}).", ""]
        out.append("| structure | " + " | ".join(verbs) + " | total |")
        out.append("|---|" + "---:|" * (len(verbs) + 1))

        def cell(sel):
            return f"{sum(1 for c in sel if flagged(c))}/{len(sel)}" if sel else ""

        for st, b in rows:
            sc = [c for c in cases if c["structure"] == st and c["base"] == b]
            label = st if b == "rmapbt" else f"{st} ({b})"
            out.append("| " + " | ".join([label] + [cell([c for c in sc if c["verb"] == v])
                                                    for v in verbs])
                       + f" | **{cell(sc)}** |")
        out.append("| **all** | " + " | ".join(cell([c for c in cases if c["verb"] == v])
                                                for v in verbs) + f" | **{cell(cases)}** |")
        out.append("")
        bad_crc = [c for c in cases if c["crc"] == "bad"]
        out.append(f"Stale CRC (the block's CRC does not match its contents): "
                   f"{cell(bad_crc)} flagged.")
        stale = [c for c in bad_crc if c["xfs_db"][-1].startswith("fuzz -d")]
        if stale:
            out.append(f"Of those, `fuzz -d` did not leave a valid CRC in {len(stale)}: "
                       + ", ".join(sorted({re.sub(r"-[a-z]+$", "", c["id"]) for c in stale}))
                       + ".")
        exits = {}
        for c in cases:
            e = str(c["xfs_repair_n"]["exit"])
            exits[e] = exits.get(e, 0) + 1
        out.append("Exit statuses: " + ", ".join(f"{e}: {n}" for e, n in sorted(exits.items()))
                   + ".")
        odd = [c for c in cases
               if c["xfs_repair_n"].get("crashed") or c["xfs_repair_n"].get("timeout")]
        out.append("xfs_repair crashed or timed out: " + (", ".join(
            f"`{c['id']}` ({c['xfs_repair_n'].get('crashed') or 'timeout'})" for c in odd)
            if odd else "never") + ".")
        quiet = [c for c in cases if not flagged(c) and c["xfs_repair_n"]["summary"]]
        if quiet:
            out += ["", f"Exit 0 although xfs_repair -n printed a complaint ({len(quiet)}):", ""]
            msgs = {}
            for c in quiet:
                first = re.sub(r"\b(0x[0-9a-f]+|\d+)\b", "N", c["xfs_repair_n"]["summary"][0])
                msgs.setdefault(first, []).append(c["id"])
            for m, ids in sorted(msgs.items(), key=lambda x: -len(x[1])):
                shown = ", ".join(f"`{i}`" for i in ids[:6]) + (", ..." if len(ids) > 6 else "")
                out.append(f"- {len(ids)} x \"{m}\": {shown}")
        refused = info.get("dropped_refused", {})
        if refused:
            msgs = {}
            for cid, m in refused.items():
                msgs.setdefault(m, []).append(cid)
            out += ["", "Refused by xfs_db (dropped):", ""]
            for m, ids in sorted(msgs.items()):
                out.append(f"- \"{m}\": " + ", ".join(f"`{i}`" for i in ids))
        clean = [c for c in cases if not flagged(c)]
        if clean:
            by_field = {}
            for c in clean:
                key = (c["structure"], c["base"], re.sub(r"\[\d+\]", "[]", c["field"]))
                by_field.setdefault(key, []).append(c["verb"] + ("/badcrc" if c["crc"] == "bad"
                                                                 and not c["field"].endswith("crc")
                                                                 else ""))
            out += ["", f"<details><summary>Not flagged by xfs_repair -n ({len(clean)}), "
                    "by field</summary>", "",
                    "| structure | base | field | verbs |", "|---|---|---|---|"]
            for (st, b, f), vs in by_field.items():
                out.append(f"| {st} | {b} | `{f}` | {', '.join(vs)} |")
            out += ["", "</details>"]
        out.append("")
    out.append(f"**Overall: {total} cases; xfs_repair -n flags nothing (exit 0) "
               f"in {total_clean}.**")
    with open(SUMMARY, "w", encoding="utf-8") as f:
        f.write("\n".join(out) + "\n")


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("words", nargs="*")
    ap.add_argument("-j", "--jobs", type=int, default=1)
    ap.add_argument("--reroll", action="store_true")
    ap.add_argument("--all", action="store_true", help="verify: every case")
    ap.add_argument("--sample", type=int, default=24, help="verify: about this many cases")
    a = ap.parse_args(argv[1:])
    words = a.words
    if words and words[0] == "list" and len(words) == 2 and words[1] in SETS:
        list_cases(words[1])
        return 0
    if words and words[0] == "verify" and len(words) == 2 and words[1] in SETS:
        return verify(words[1], a.sample, a.all)
    if words and words[0] == "reannotate" and len(words) == 2 and words[1] in SETS:
        reannotate(words[1])
        return 0
    if words == ["summary"]:
        write_summary()
        return 0
    sets = words or SETS
    for s in sets:
        if s not in SETS:
            ap.error(f"unknown set or command {s!r}")
    os.makedirs(WORK, exist_ok=True)
    for s in sets:
        generate(s, a.jobs, a.reroll)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
