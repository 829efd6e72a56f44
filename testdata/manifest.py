#!/usr/bin/env python3
"""Write the JSON Lines manifest of a fixture image.

    manifest.py walk MOUNTPOINT > body.jsonl
        Walk a mounted filesystem (before unmounting it).
    manifest.py tree STAGING_DIR IMAGE > body.jsonl
        For images built with a mkfs protofile (which this kernel cannot
        mount): walk the staging tree the protofile copied and take the inode
        numbers from the image with xfs_db.
    manifest.py finalize --name N --mkfs OPTS --image IMG --repair-exit RC \
                         body.jsonl > manifests/N.jsonl
        Prepend the header and annotate every inode-backed entry with the
        formats xfs_db sees in the unmounted image (with --annotate-from
        REPLAYED, in a copy whose dirty log has been replayed: the manifest
        always describes the filesystem after log recovery).

Format (version 1), one JSON object per line:

  header   {"manifest":1,"image":..,"mkfs":..,"uuid":..,"size":bytes,
            "xfs_repair_n_exit":N, "blocksize":..,"agcount":..,"agblocks":..,
            "dblocks":..,"inodesize":..,"rootino":..}
  then, walked from "/" depth-first with the entries of each directory in
  byte order of their names, an object per path:
  dir      {"type":"dir","path":"/a","ino":N,"entries":N}   entries excludes . and ..
  file     {"type":"file","path":..,"ino":N,"size":N,"nlink":N,"sha256":hex}
  symlink  {"type":"symlink","path":..,"ino":N,"target":".."}
  chardev / blockdev  {"type":..,"path":..,"ino":N,"rdev_major":N,"rdev_minor":N}
  fifo / socket       {"type":..,"path":..,"ino":N}
  and right after each of those, one object per extended attribute in name order:
  xattr    {"type":"xattr","path":..,"name":"user.x","size":N,"sha256":hex}

Every inode-backed object also carries what xfs_db reports for its inode:
  "mode" (st_mode as a number), "fork" (data fork format: local, extents,
  btree, dev), "nextents", "attr_fork" (none, local, extents, btree),
  "attr_format" (none, shortform, leaf, node, or empty when the fork exists but holds
  nothing), on directories "dir_format" (shortform, block, leaf, node), and on
  btree-format data forks "bmbt_height" (levels, counting the root in the inode).
A hard-linked inode appears once per path, with the same "ino".
"""

import argparse
import hashlib
import json
import os
import stat
import sys

import xfsdb


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            chunk = f.read(1 << 20)
            if not chunk:
                return h.hexdigest()
            h.update(chunk)


def fs_name(b: bytes) -> str:
    """Names are bytes on disk; the fixtures only use valid UTF-8."""
    return b.decode("utf-8")


def walk(top: str, ino_of=None):
    """Yield manifest objects for the tree at `top`.

    `ino_of(abs_path)` overrides st_ino (used for staging trees).
    """
    top_b = os.fsencode(top)

    def visit(rel: bytes):
        full = top_b + rel if rel else top_b
        st = os.lstat(full)
        path = fs_name(rel) if rel else "/"
        ino = ino_of(path) if ino_of else st.st_ino
        mode = st.st_mode
        if stat.S_ISDIR(mode):
            names = sorted(os.listdir(full))
            yield {"type": "dir", "path": path, "ino": ino, "entries": len(names)}
        elif stat.S_ISREG(mode):
            yield {"type": "file", "path": path, "ino": ino, "size": st.st_size,
                   "nlink": st.st_nlink, "sha256": sha256_file(full)}
        elif stat.S_ISLNK(mode):
            yield {"type": "symlink", "path": path, "ino": ino,
                   "target": fs_name(os.readlink(full))}
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            yield {"type": "chardev" if stat.S_ISCHR(mode) else "blockdev",
                   "path": path, "ino": ino,
                   "rdev_major": os.major(st.st_rdev), "rdev_minor": os.minor(st.st_rdev)}
        elif stat.S_ISFIFO(mode):
            yield {"type": "fifo", "path": path, "ino": ino}
        elif stat.S_ISSOCK(mode):
            yield {"type": "socket", "path": path, "ino": ino}
        else:
            raise RuntimeError(f"unexpected file type {mode:o} at {path}")
        if not ino_of:
            for name in sorted(os.listxattr(full, follow_symlinks=False)):
                value = os.getxattr(full, name, follow_symlinks=False)
                yield {"type": "xattr", "path": path, "name": name, "size": len(value),
                       "sha256": hashlib.sha256(value).hexdigest()}
        if stat.S_ISDIR(mode):
            for name in sorted(os.listdir(full)):
                yield from visit(rel + b"/" + name)

    yield from visit(b"")


def cmd_walk(mnt: str) -> None:
    for obj in walk(mnt):
        print(json.dumps(obj, ensure_ascii=False, separators=(",", ":")))


def cmd_tree(staging: str, image: str) -> None:
    paths = [o["path"] for o in walk(staging, ino_of=lambda p: 0)]
    inos = xfsdb.lookup_inodes(image, [p for p in paths if p != "/"])
    inos["/"] = xfsdb.geometry(image)["rootino"]
    for obj in walk(staging, ino_of=lambda p: inos[p]):
        print(json.dumps(obj, ensure_ascii=False, separators=(",", ":")))


def cmd_finalize(a) -> None:
    with open(a.body, encoding="utf-8") as f:
        body = [json.loads(line) for line in f if line.strip()]
    geo = xfsdb.geometry(a.image)
    header = {
        "manifest": 1,
        "image": a.name,
        "mkfs": a.mkfs,
        "uuid": geo["uuid"],
        "size": os.path.getsize(a.image),
        "xfs_repair_n_exit": a.repair_exit,
        "blocksize": geo["blocksize"],
        "agcount": geo["agcount"],
        "agblocks": geo["agblocks"],
        "dblocks": geo["dblocks"],
        "inodesize": geo["inodesize"],
        "rootino": geo["rootino"],
    }
    inos = sorted({o["ino"] for o in body if o["type"] != "xattr"})
    facts = xfsdb.describe_inodes(a.annotate_from or a.image, inos)
    print(json.dumps(header, ensure_ascii=False, separators=(",", ":")))
    for o in body:
        if o["type"] != "xattr":
            o.update(facts[o["ino"]])
        print(json.dumps(o, ensure_ascii=False, separators=(",", ":")))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("walk")
    w.add_argument("mountpoint")
    t = sub.add_parser("tree")
    t.add_argument("staging")
    t.add_argument("image")
    f = sub.add_parser("finalize")
    f.add_argument("--name", required=True)
    f.add_argument("--mkfs", required=True)
    f.add_argument("--image", required=True)
    f.add_argument("--repair-exit", type=int, required=True)
    f.add_argument("--annotate-from", metavar="IMG",
                   help="take the per-inode facts from IMG instead (for an image whose "
                        "log must be replayed first: a replayed copy)")
    f.add_argument("body")
    a = p.parse_args()
    if a.cmd == "walk":
        cmd_walk(a.mountpoint)
    elif a.cmd == "tree":
        cmd_tree(a.staging, a.image)
    else:
        cmd_finalize(a)
    return 0


if __name__ == "__main__":
    sys.exit(main())
