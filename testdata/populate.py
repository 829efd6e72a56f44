#!/usr/bin/env python3
"""Populate a mounted XFS filesystem with deterministic fixture content.

Run by make-fixtures.sh as root against a loop-mounted image:

    populate.py standard MOUNTPOINT   # the standard content set
    populate.py stress MOUNTPOINT     # the standard set plus multi-level
                                      # btrees (the `large` image)
    populate.py small MOUNTPOINT      # a handful of files (the `dirtylog` image)
    populate.py asciici STAGING_DIR PROTOFILE
                                      # a tree plus a mkfs.xfs protofile that
                                      # copies it (the kernel no longer mounts
                                      # ascii-ci filesystems)

Every name and every byte of content comes from this script; nothing is
random.  File contents are generated from the file's tag (usually its path):
each block starts with a line naming the tag and the block number and is
padded with a short line derived from the tag, repeated.  That makes every
file's hash distinct while the image still compresses to almost nothing.
"""

import errno
import fcntl
import hashlib
import mmap
import os
import socket
import stat
import struct
import subprocess
import sys

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB

# Linux ioctls for reflink (include/uapi/linux/fs.h):
# FICLONE = _IOW(0x94, 9, int), FICLONERANGE = _IOW(0x94, 13, struct file_clone_range)
FICLONE = 0x40049409
FICLONERANGE = 0x4020940D


# --------------------------------------------------------------------------
# deterministic content
# --------------------------------------------------------------------------


def pattern_line(tag: str) -> bytes:
    """A 63-byte printable line derived from `tag` (an LCG seeded by its hash)."""
    seed = int.from_bytes(hashlib.sha256(tag.encode()).digest()[:8], "little")
    alphabet = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 "
    out = bytearray()
    x = seed
    for _ in range(63):
        x = (x * 6364136223846793005 + 1442695040888963407) % (1 << 64)
        out.append(alphabet[(x >> 33) % len(alphabet)])
    out.append(ord("\n"))
    return bytes(out)


def content(tag: str, size: int, unit: int = 4096) -> bytes:
    """`size` bytes of content for `tag`: per-`unit` header line plus a repeated pattern."""
    line = pattern_line(tag)
    filler = (line * (unit // len(line) + 1))[:unit]
    out = bytearray()
    n = 0
    while len(out) < size:
        head = f"{tag} block {n:08d}\n".encode()
        block = head + filler[len(head):]
        out += block[:unit]
        n += 1
    return bytes(out[:size])


def short_content(tag: str) -> bytes:
    """A one-line file body, unique per tag."""
    return f"{tag}\n".encode()


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


def write_file(path: str, data: bytes, mode: int = 0o644) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
    finally:
        os.close(fd)


def overwrite(path: str, data: bytes, offset: int) -> None:
    """Write `data` at `offset` of an existing file and fsync it."""
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, data, offset)
        os.fsync(fd)
    finally:
        os.close(fd)


def mkdirs(path: str) -> str:
    os.makedirs(path, exist_ok=True)
    return path


def fs_block_size(path: str) -> int:
    return os.statvfs(path).f_bsize


class DirectWriter:
    """Writes whole aligned blocks with O_DIRECT.

    Direct I/O allocates exactly the range written, with no delayed allocation
    and no speculative preallocation beyond EOF, so interleaved writes really
    do produce one extent per write.
    """

    def __init__(self, path: str, unit: int):
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_DIRECT, 0o644)
        self.unit = unit
        self.buf = mmap.mmap(-1, unit)  # page aligned, as O_DIRECT requires

    def write_block(self, data: bytes, offset: int) -> None:
        assert len(data) == self.unit and offset % self.unit == 0
        self.buf.seek(0)
        self.buf.write(data)
        n = os.pwrite(self.fd, self.buf, offset)
        if n != self.unit:
            raise OSError(errno.EIO, f"short direct write {n}")

    def close(self) -> None:
        os.close(self.fd)
        self.buf.close()


def clone_range(src: str, src_off: int, length: int, dst: str, dst_off: int) -> None:
    """Share `length` bytes of `src` at `dst` (FICLONERANGE, i.e. xfs_io reflink)."""
    sfd = os.open(src, os.O_RDONLY)
    dfd = os.open(dst, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        arg = struct.pack("=qQQQ", sfd, src_off, length, dst_off)
        fcntl.ioctl(dfd, FICLONERANGE, arg)
    finally:
        os.close(sfd)
        os.close(dfd)


def run(*argv: str) -> None:
    subprocess.run(argv, check=True)


def set_xattr(path: str, name: str, value: bytes) -> None:
    os.setxattr(path, name, value, follow_symlinks=False)


# --------------------------------------------------------------------------
# the standard content set
# --------------------------------------------------------------------------


def build_dir_chain(root: str) -> None:
    """Nested directories in each directory format, one inside the other.

    /dirs/node (~1,500 entries) holds /dirs/node/leaf (a few hundred), which
    holds .../block (~30), which holds .../shortform (a handful), which holds
    the deepest file.  Each level also has plain entries so its format is what
    its name says; make-fixtures.sh verifies the formats with xfs_db.
    """
    node = mkdirs(os.path.join(root, "dirs", "node"))
    leaf = mkdirs(os.path.join(node, "leaf"))
    block = mkdirs(os.path.join(leaf, "block"))
    sf = mkdirs(os.path.join(block, "shortform"))
    for i in range(4):
        write_file(os.path.join(sf, f"sf{i}"), short_content(f"{sf}/sf{i}"[len(root):]))
    write_file(os.path.join(sf, "deepest"), short_content("deepest"))
    for i in range(30):
        p = os.path.join(block, f"block-entry-{i:02d}")
        write_file(p, short_content(p[len(root):]))
    for i in range(300):
        p = os.path.join(leaf, f"leaf-entry-{i:03d}")
        write_file(p, short_content(p[len(root):]))
    for i in range(1700):
        p = os.path.join(node, f"node-entry-{i:04d}")
        write_file(p, short_content(p[len(root):]))
    # Punch holes into the directories' data blocks: free space inside
    # directory blocks (bestfree tables, unused entries) is part of what a
    # checker has to understand.
    for i in range(0, 1700, 10):
        os.unlink(os.path.join(node, f"node-entry-{i:04d}"))
    for i in range(0, 300, 25):
        os.unlink(os.path.join(leaf, f"leaf-entry-{i:03d}"))
    # A directory that was large and became small again stays in its
    # block/leaf format on disk only if it still needs it; this one shrinks
    # from block back to shortform.
    shrunk = mkdirs(os.path.join(root, "dirs", "shrunk"))
    for i in range(40):
        write_file(os.path.join(shrunk, f"tmp-{i:02d}"), short_content(f"shrunk {i}"))
    for i in range(2, 40):
        os.unlink(os.path.join(shrunk, f"tmp-{i:02d}"))
    empty = mkdirs(os.path.join(root, "dirs", "empty"))
    assert not os.listdir(empty)


def build_files(root: str) -> None:
    files = mkdirs(os.path.join(root, "files"))
    bs = fs_block_size(root)

    small = mkdirs(os.path.join(files, "small"))
    size = 1
    for i in range(24):
        p = os.path.join(small, f"small-{i:02d}")
        write_file(p, content(p[len(root):], size))
        size = size * 3 // 2 + 1  # 1, 2, 4, 7, 11, ... up to ~9 KiB
    write_file(os.path.join(files, "empty"), b"")

    large = mkdirs(os.path.join(files, "large"))
    write_file(os.path.join(large, "eight-mib"), content("/files/large/eight-mib", 8 * MIB))
    write_file(os.path.join(large, "three-mib-and-a-bit"),
               content("/files/large/three-mib-and-a-bit", 3 * MIB + 123))

    # Sparse: data at a few far-apart offsets, the last past 1 GiB, then a
    # short unaligned tail.
    sparse = os.path.join(files, "sparse")
    fd = os.open(sparse, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for off, ln in [(0, 4096), (1 * MIB, 8192), (40 * MIB, 4096),
                        (GIB + 4096, 4096), (GIB + 1 * MIB, 100)]:
            os.pwrite(fd, content(f"/files/sparse@{off}", ln), off)
    finally:
        os.close(fd)
    # Sparse tail: data, then a hole up to EOF.
    tail = os.path.join(files, "sparse-tail")
    write_file(tail, content("/files/sparse-tail", 4096))
    os.truncate(tail, 10 * MIB)

    # Fragmented: two files written block by block, interleaved, with direct
    # I/O, so each ends up with one extent per block (and a bmbt-format data
    # fork: far more extents than fit in the inode).
    a = DirectWriter(os.path.join(files, "fragmented-a"), bs)
    b = DirectWriter(os.path.join(files, "fragmented-b"), bs)
    try:
        for i in range(100):
            a.write_block(content(f"/files/fragmented-a#{i}", bs, bs), i * bs)
            b.write_block(content(f"/files/fragmented-b#{i}", bs, bs), i * bs)
    finally:
        a.close()
        b.close()

    # Flush delayed allocations first: on a 64 MiB filesystem their worst-case
    # reservations can make fallocate fail with ENOSPC.
    os.sync()

    # Unwritten extents: preallocate 1 MiB, write into the middle of it.
    unwritten = os.path.join(files, "unwritten")
    run("xfs_io", "-f", "-c", "falloc 0 1m", unwritten)
    overwrite(unwritten, content("/files/unwritten", 8192), 256 * KIB)
    # Preallocated past EOF (falloc -k keeps the size): blocks beyond EOF.
    pre = os.path.join(files, "prealloc-past-eof")
    write_file(pre, content("/files/prealloc-past-eof", 5000))
    run("xfs_io", "-c", "falloc -k 8k 1m", pre)


def build_links(root: str) -> None:
    links = mkdirs(os.path.join(root, "links"))
    os.symlink("../files/small/small-03", os.path.join(links, "short"))
    os.symlink("../dirs", os.path.join(links, "to-dir"))
    os.symlink("does/not/exist", os.path.join(links, "dangling"))
    # Remote symlinks: the target does not fit in the inode literal area.
    long_target = "/".join(f"component-{i:03d}" for i in range(40))  # 559 bytes
    os.symlink(long_target, os.path.join(links, "long"))
    max_target = ("m" * 99 + "/") * 10 + "x" * 23  # 1023 bytes, the maximum
    assert len(max_target) == 1023
    os.symlink(max_target, os.path.join(links, "max-length"))

    # Hard links: one inode, three directories.
    hl = mkdirs(os.path.join(root, "hardlinks"))
    one = mkdirs(os.path.join(hl, "one"))
    two = mkdirs(os.path.join(hl, "two"))
    three = mkdirs(os.path.join(hl, "three"))
    orig = os.path.join(one, "original")
    write_file(orig, content("/hardlinks/one/original", 3000))
    os.link(orig, os.path.join(two, "second-name"))
    os.link(orig, os.path.join(three, "third-name"))


def build_xattrs(root: str) -> None:
    x = mkdirs(os.path.join(root, "xattrs"))
    bs = fs_block_size(root)

    local = os.path.join(x, "local")
    write_file(local, short_content("/xattrs/local"))
    set_xattr(local, "user.colour", b"blue")
    set_xattr(local, "user.empty", b"")
    set_xattr(local, "trusted.owner", b"fixture")
    set_xattr(local, "security.label", b"unconfined")

    remote = os.path.join(x, "remote")
    write_file(remote, short_content("/xattrs/remote"))
    set_xattr(remote, "user.small", b"tiny")
    # Values larger than a block are stored in remote value blocks; the
    # second spans several blocks.
    set_xattr(remote, "user.big", content("user.big", 6000))
    set_xattr(remote, "trusted.bigger", content("trusted.bigger", 3 * bs + 100))

    leaf = os.path.join(x, "leaf")
    write_file(leaf, short_content("/xattrs/leaf"))
    for i in range(30):
        set_xattr(leaf, f"user.leaf-attr-{i:03d}", content(f"leaf {i}", 40))

    node = os.path.join(x, "node")
    write_file(node, short_content("/xattrs/node"))
    for i in range(400):
        ns = "trusted" if i % 5 == 0 else "user"
        set_xattr(node, f"{ns}.node-attr-{i:04d}", content(f"node {i}", 60))
    # Removing some leaves holes in the attr leaf blocks.
    for i in range(1, 400, 7):
        ns = "trusted" if i % 5 == 0 else "user"
        os.removexattr(node, f"{ns}.node-attr-{i:04d}")

    d = mkdirs(os.path.join(x, "on-a-directory"))
    write_file(os.path.join(d, "child"), short_content("/xattrs/on-a-directory/child"))
    set_xattr(d, "user.dir-attr", b"directories have attr forks too")


def build_reflinks(root: str) -> None:
    r = mkdirs(os.path.join(root, "reflink"))
    bs = fs_block_size(root)
    src = os.path.join(r, "source")
    write_file(src, content("/reflink/source", 1 * MIB))
    os.sync()
    run("cp", "--reflink=always", src, os.path.join(r, "clone"))
    cow = os.path.join(r, "clone-then-cow")
    run("cp", "--reflink=always", src, cow)
    overwrite(cow, content("/reflink/clone-then-cow", 4096), 256 * KIB)
    # Separate ranges shared with the source, at shifted offsets, with holes
    # between them: every other 64 KiB of the source.
    ranges = os.path.join(r, "ranges")
    for i in range(8):
        clone_range(src, i * 128 * KIB, 64 * KIB, ranges, i * 96 * KIB)
    # Also share single blocks so the refcount btree has records of many
    # different lengths and counts (block 0 ends up with refcount 7).
    for i in range(3):
        clone_range(src, 0, bs, os.path.join(r, f"block0-copy-{i}"), 0)


def build_names(root: str) -> None:
    n = mkdirs(os.path.join(root, "names"))
    names = [
        "L" * 255,                       # maximum length, ASCII
        "é" * 127 + "x",                 # maximum length (255 bytes), UTF-8
        "with space",
        " leading space",
        "trailing space ",
        "ünïcödé",
        "日本語のファイル名",
        "emoji-🦀-crab",
        "-starts-with-dash",
        "...",
        ".hidden",
        "semi;colon&amp",
        "quote\"and'apostrophe",
        "back\\slash",
    ]
    for name in names:
        assert len(name.encode()) <= 255, name
        write_file(os.path.join(n, name), short_content(f"/names/{name}"))
    mkdirs(os.path.join(n, "D" * 255))
    write_file(os.path.join(n, "D" * 255, "inside-a-long-name"), b"inside\n")


def build_special(root: str) -> None:
    s = mkdirs(os.path.join(root, "special"))
    os.mkfifo(os.path.join(s, "fifo"))
    os.mknod(os.path.join(s, "char-null"), 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    os.mknod(os.path.join(s, "block-loop"), 0o660 | stat.S_IFBLK, os.makedev(7, 200))
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(os.path.join(s, "socket"))
    finally:
        sock.close()
    write_file(os.path.join(s, "setuid-mode"), b"#!/bin/true\n", 0o4755)
    os.chmod(os.path.join(s, "setuid-mode"), 0o4755)


def standard(root: str) -> None:
    write_file(os.path.join(root, "README"), b"scrubd fixture image: standard content set\n")
    build_dir_chain(root)
    build_files(root)
    build_links(root)
    build_xattrs(root)
    build_reflinks(root)
    build_names(root)
    build_special(root)


# --------------------------------------------------------------------------
# the `large` image: multi-level btrees
# --------------------------------------------------------------------------


def stress(root: str) -> None:
    """Content that gives one AG multi-level free space, inode, rmap and
    refcount btrees, plus a file with a deep bmbt and a node directory.

    Everything lives in one directory, /stress, because XFS places a file's
    inode (and, near it, its data) in its parent directory's AG.
    """
    st = mkdirs(os.path.join(root, "stress"))
    bs = fs_block_size(root)

    # 1. ~20,000 inodes in one directory: > 252 inode chunks in this AG, so
    #    the inobt needs a second level.  Every 8th file has a little data.
    many = 20000
    for i in range(many):
        p = os.path.join(st, f"m{i:05d}")
        write_file(p, short_content(f"/stress/m{i:05d}") if i % 8 == 0 else b"")
    os.sync()

    # 2. 2,000 one-block files written with direct I/O, one after the other,
    #    so their blocks are laid out in order.
    frag = 2000
    for i in range(frag):
        w = DirectWriter(os.path.join(st, f"g{i:04d}"), bs)
        try:
            w.write_block(content(f"/stress/g{i:04d}", bs, bs), 0)
        finally:
            w.close()

    # 3. Delete every other one of both sets: every inode chunk keeps free
    #    inodes (finobt records for all of them) and free space becomes
    #    ~1,000 single-block extents (bnobt/cntbt records).
    for i in range(1, many, 2):
        os.unlink(os.path.join(st, f"m{i:05d}"))
    for i in range(1, frag, 2):
        os.unlink(os.path.join(st, f"g{i:04d}"))
    os.sync()

    # 4. Refcount btree: share every other block of a contiguous source, so
    #    each shared block is its own refcount record (refcount 2).
    src = os.path.join(st, "reflink-source")
    nsrc = 1400
    w = DirectWriter(src, nsrc * bs)
    try:
        w.write_block(content("/stress/reflink-source", nsrc * bs), 0)
    finally:
        w.close()
    dst = os.path.join(st, "reflink-every-other-block")
    fd_s = os.open(src, os.O_RDONLY)
    fd_d = os.open(dst, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        for i in range(0, nsrc, 2):
            arg = struct.pack("=qQQQ", fd_s, i * bs, bs, i * bs)
            fcntl.ioctl(fd_d, FICLONERANGE, arg)
    finally:
        os.close(fd_s)
        os.close(fd_d)

    # 5. A sparse file written block by block with a one-block gap each time:
    #    one extent per block, enough extents for a bmbt of height >= 3.
    sp = DirectWriter(os.path.join(st, "sparse-btree"), bs)
    try:
        for i in range(6000):
            sp.write_block(content(f"/stress/sparse-btree#{i}", bs, bs), 2 * i * bs)
    finally:
        sp.close()
    os.sync()


# --------------------------------------------------------------------------
# the `dirtylog` image
# --------------------------------------------------------------------------


def small(root: str) -> None:
    write_file(os.path.join(root, "README"), b"scrubd fixture image: dirty log\n")
    d = mkdirs(os.path.join(root, "dir"))
    for i in range(30):
        p = os.path.join(d, f"file-{i:02d}")
        write_file(p, content(f"/dir/file-{i:02d}", 100 + 97 * i))
    os.symlink("dir/file-00", os.path.join(root, "link"))
    write_file(os.path.join(root, "big"), content("/big", 2 * MIB))
    set_xattr(os.path.join(root, "big"), "user.note", b"written before the shutdown")


# --------------------------------------------------------------------------
# the `asciici` image (built with a protofile: the running kernel refuses to
# mount ascii-ci filesystems)
# --------------------------------------------------------------------------


def asciici(staging: str, protofile: str) -> None:
    """Create a staging tree and a mkfs.xfs protofile describing it.

    In an ascii-ci directory, names that differ only in ASCII case are the
    same name, so they cannot coexist; names that differ only in the case of
    non-ASCII letters are different names (the hash folds A-Z only).  The
    tree has both kinds: mixed-case ASCII names, whose ci hash differs from
    the plain hash, and pairs like "Ärger"/"ärger".
    """
    os.makedirs(staging, exist_ok=False)
    tree: list = []  # (relative path, kind, payload)

    def add_file(rel: str, short: bool = False) -> None:
        body = short_content("/" + rel) if short else content("/" + rel, 200 + 13 * len(tree))
        tree.append((rel, "file", body))

    def add_dir(rel: str) -> None:
        tree.append((rel, "dir", None))

    add_file("README")
    add_file("MixedCase.TXT")
    add_dir("Ärger")
    add_dir("ärger")
    add_file("Ärger/Inside-Upper")
    add_file("ärger/inside-lower")
    add_dir("ÉTÉ")
    add_dir("été")
    add_dir("CamelCaseDirectory")
    for i in range(5):
        add_file(f"CamelCaseDirectory/Short-{i}")
    add_dir("BlockDir")
    for i in range(30):
        add_file(f"BlockDir/Entry-{i:02d}-AbCdEf", short=True)
    add_dir("LeafDir")
    for i in range(300):
        add_file(f"LeafDir/LeafEntry-{i:03d}-XyZ", short=True)
    add_dir("NodeDir")
    for i in range(1500):
        add_file(f"NodeDir/NodeEntry-{i:04d}-QrStUv", short=True)
    tree.append(("LinkToReadme", "symlink", "README"))

    for rel, kind, payload in tree:
        p = os.path.join(staging, rel)
        if kind == "dir":
            os.mkdir(p)
        elif kind == "file":
            write_file(p, payload)
        else:
            os.symlink(payload, p)

    # Protofile: one line per entry; directories open a block closed by "$".
    # Names are space-free so they tokenise cleanly.
    lines = ["scrubd-asciici", "0 0", "d--755 0 0"]

    def emit(dirpath: str, depth: int) -> None:
        for name in sorted(os.listdir(dirpath), key=os.fsencode):
            assert " " not in name and ":" not in name
            p = os.path.join(dirpath, name)
            ind = "  " * depth
            if os.path.islink(p):
                lines.append(f"{ind}{name} l--777 0 0 {os.readlink(p)}")
            elif os.path.isdir(p):
                lines.append(f"{ind}{name} d--755 0 0")
                emit(p, depth + 1)
                lines.append(f"{ind}$")
            else:
                lines.append(f"{ind}{name} ---644 0 0 {os.path.abspath(p)}")

    emit(staging, 1)
    lines.append("$")
    with open(protofile, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


def main(argv: list) -> int:
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    mode = argv[1]
    if mode == "standard":
        standard(argv[2])
    elif mode == "stress":
        standard(argv[2])
        stress(argv[2])
    elif mode == "small":
        small(argv[2])
    elif mode == "asciici":
        asciici(argv[2], argv[3])
    else:
        print(f"unknown mode {mode}", file=sys.stderr)
        return 2
    os.sync()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
