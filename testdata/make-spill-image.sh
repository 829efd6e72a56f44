#!/bin/sh
# Makes an image whose reverse-mapping shadow is bigger than 16 MiB, for
# measuring the shadow check with a staging budget it must spill from
# (BENCHMARKS.md, "shadow check under a small budget"). Not a committed
# fixture: 8 GiB sparse, about 100 MiB on disk, made in about a minute.
#
# One file of EXTENTS one-block unwritten extents with one-block holes
# between them: every extent is a reverse mapping (and a bmbt record), so
# the shadow stages EXTENTS records plus the metadata's.
#
# Usage (root: loop mount): testdata/make-spill-image.sh OUT.img [EXTENTS]
set -eu
out=${1:?usage: $0 OUT.img [EXTENTS]}
extents=${2:-700000}
uuid=5c8dd000-0000-4000-8000-00000000051b
mnt=$(mktemp -d)
trap 'umount "$mnt" 2>/dev/null || true; rmdir "$mnt"' EXIT
rm -f "$out"
truncate -s 8G "$out"
mkfs.xfs -q -f -m rmapbt=1,uuid=$uuid "$out"
mount -o loop "$out" "$mnt"
python3 - "$mnt/many-extents" "$extents" <<'PY'
import ctypes, os, sys
path, n = sys.argv[1], int(sys.argv[2])
libc = ctypes.CDLL(None, use_errno=True)
libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]
bs = 4096
fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
def falloc(mode, off, length):
    if libc.fallocate(fd, mode, off, length) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
falloc(0, 0, 2 * n * bs)  # unwritten blocks, no data written
PUNCH_KEEP_SIZE = 0x02 | 0x01
for i in range(n):
    falloc(PUNCH_KEEP_SIZE, (2 * i + 1) * bs, bs)
os.close(fd)
PY
umount "$mnt"
xfs_repair -n "$out" >/dev/null 2>&1 || { echo "$out: xfs_repair -n flags it" >&2; exit 1; }
echo "$out: $extents extents; xfs_repair -n: clean"
