#!/usr/bin/env bash
# make-fixtures.sh: build every XFS fixture image from scratch.
#
# Usage (as root; it runs mkfs, loop devices and mounts):
#     sudo testdata/make-fixtures.sh            # all images
#     sudo testdata/make-fixtures.sh default v4 # only the named ones
#
# Needs xfsprogs (mkfs.xfs, xfs_db, xfs_io, xfs_repair), zstd, python3,
# losetup and a kernel that mounts XFS v5 read-write.  Takes a few minutes.
#
# For each image it: makes a sparse file, runs mkfs.xfs with a fixed UUID,
# loop-mounts it, fills it with the deterministic content of populate.py,
# writes the manifest (manifest.py) from the mounted tree, unmounts, runs
# `xfs_repair -n` (which must exit 0 unless the image is meant to be
# unclean), annotates the manifest with what xfs_db sees, and compresses the
# image with zstd.  Outputs:
#     testdata/images/<name>.img.zst     committed
#     testdata/manifests/<name>.jsonl    committed
#     testdata/work/                     scratch (git-ignored)
#
# Nothing here is random: names and contents come from populate.py, UUIDs are
# fixed.  Timestamps, inode generation numbers and exact block placement do
# vary between runs, so regenerating gives equivalent, not identical, images.
#
# Images under 300 MiB need the fstests escape hatch (TEST_DIR, TEST_DEV and
# QA_CHECK_FS in mkfs.xfs's environment), which mkfs.xfs honours to allow
# filesystems that small.
#
# The kernel running this no longer mounts ascii-ci or V4 filesystems, so
# `asciici` is populated through a mkfs.xfs protofile and `v4` stays empty;
# their manifests take inode numbers from xfs_db.

set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
WORK=$HERE/work
IMAGES=$HERE/images
MANIFESTS=$HERE/manifests
MNT=$WORK/mnt
PY=(python3 -B)

if [[ $EUID -ne 0 ]]; then
    echo "make-fixtures.sh must be run as root (mkfs, losetup, mount)" >&2
    exit 1
fi
for tool in mkfs.xfs xfs_db xfs_io xfs_repair zstd python3 losetup mount umount; do
    command -v "$tool" >/dev/null || { echo "missing tool: $tool" >&2; exit 1; }
done

LOOP=""
cleanup() {
    if mountpoint -q "$MNT" 2>/dev/null; then umount "$MNT" || true; fi
    if [[ -n $LOOP ]]; then losetup -d "$LOOP" || true; fi
}
trap cleanup EXIT

mkdir -p "$WORK" "$IMAGES" "$MANIFESTS" "$MNT"

log() { printf '\n=== [%3ds] %s\n' "$SECONDS" "$*"; }

# mkfs_image NAME SIZE_MIB UUID OPTIONS... : a fresh image in $WORK.
mkfs_image() {
    local name=$1 size=$2 uuid=$3
    shift 3
    local img=$WORK/$name.img
    rm -f "$img"
    truncate -s "${size}M" "$img"
    local -a env=()
    if ((size < 300)); then
        env=(TEST_DIR=/tmp TEST_DEV=/dev/null QA_CHECK_FS=1)
    fi
    env "${env[@]}" mkfs.xfs -q -f "$@" -m uuid="$uuid" "$img"
}

mount_image() {
    LOOP=$(losetup --find --show "$WORK/$1.img")
    mount -t xfs "$LOOP" "$MNT"
}

umount_image() {
    umount "$MNT"
    losetup -d "$LOOP"
    LOOP=""
}

# finish NAME MKFS_OPTS EXPECT_CLEAN BODY [ANNOTATE_FROM]: repair check,
# manifest, compression.
finish() {
    local name=$1 opts=$2 expect_clean=$3 body=$4
    local img=$WORK/$name.img rc=0 annotate=${5:-$WORK/$1.img}
    xfs_repair -n -f "$img" >"$WORK/$name.repair.log" 2>&1 || rc=$?
    if [[ $expect_clean == yes && $rc -ne 0 ]]; then
        cat "$WORK/$name.repair.log" >&2
        echo "xfs_repair -n on $name exited $rc; the image should be clean" >&2
        exit 1
    fi
    echo "xfs_repair -n exit status: $rc"
    "${PY[@]}" "$HERE/manifest.py" finalize --name "$name" --mkfs "$opts" \
        --image "$img" --repair-exit "$rc" --annotate-from "$annotate" "$body" \
        >"$MANIFESTS/$name.jsonl.tmp"
    mv "$MANIFESTS/$name.jsonl.tmp" "$MANIFESTS/$name.jsonl"
    echo "directory formats:"
    "${PY[@]}" "$HERE/xfsdb.py" formats "$MANIFESTS/$name.jsonl"
    zstd -q -f -19 -T0 --long=27 "$img" -o "$IMAGES/$name.img.zst"
}

# populated NAME SIZE UUID POPULATE_MODE MKFS_OPTS: the common mounted path.
populated() {
    local name=$1 size=$2 uuid=$3 mode=$4 opts=$5
    log "$name: mkfs.xfs ${opts:-(defaults)}, ${size} MiB, $mode content"
    # shellcheck disable=SC2086  # options are deliberately word-split
    mkfs_image "$name" "$size" "$uuid" $opts
    mount_image "$name"
    "${PY[@]}" "$HERE/populate.py" "$mode" "$MNT"
    sync
    "${PY[@]}" "$HERE/manifest.py" walk "$MNT" >"$WORK/$name.body.jsonl"
    umount_image
    finish "$name" "$opts" yes "$WORK/$name.body.jsonl"
}

# unmounted NAME SIZE UUID MKFS_OPTS [STAGING]: built by mkfs alone.
unmounted() {
    local name=$1 size=$2 uuid=$3 opts=$4 staging=${5:-}
    log "$name: mkfs.xfs ${opts:-(defaults)}, ${size} MiB${staging:+, protofile}"
    local -a proto=()
    if [[ -z $staging ]]; then
        staging=$WORK/$name.staging
        rm -rf "$staging"
        mkdir -p "$staging"
    else
        proto=(-p "$WORK/$name.proto")
    fi
    # shellcheck disable=SC2086
    mkfs_image "$name" "$size" "$uuid" $opts "${proto[@]}"
    "${PY[@]}" "$HERE/manifest.py" tree "$staging" "$WORK/$name.img" >"$WORK/$name.body.jsonl"
    finish "$name" "$opts" yes "$WORK/$name.body.jsonl"
}

build_empty() {
    unmounted empty 32 5c2bd000-0000-4000-8000-000000000001 ""
}

build_default() {
    populated default 64 5c2bd000-0000-4000-8000-000000000002 standard ""
}

build_rmapbt() {
    populated rmapbt 64 5c2bd000-0000-4000-8000-000000000003 standard "-m rmapbt=1"
}

build_nofinobt() {
    populated nofinobt 64 5c2bd000-0000-4000-8000-000000000004 standard "-m finobt=0"
}

build_1k() {
    populated 1k 64 5c2bd000-0000-4000-8000-000000000005 standard "-b size=1024 -m rmapbt=1"
}

build_8ag() {
    populated 8ag 128 5c2bd000-0000-4000-8000-000000000006 standard "-d agcount=8 -m rmapbt=1"
}

build_large() {
    populated large 320 5c2bd000-0000-4000-8000-000000000007 stress "-m rmapbt=1"
    log "large: btree heights (xfs_db agf/agi levels; bmbt from the inode root)"
    "${PY[@]}" "$HERE/xfsdb.py" heights "$WORK/large.img" --require "$MANIFESTS/large.jsonl"
}

build_dirtylog() {
    local name=dirtylog opts=""
    log "$name: mkfs defaults, 64 MiB, small content, shut down without log flush"
    mkfs_image "$name" 64 5c2bd000-0000-4000-8000-000000000008
    mount_image "$name"
    "${PY[@]}" "$HERE/populate.py" small "$MNT"
    # sync forces the log to disk but leaves the metadata it describes
    # unwritten in place; shutting down without a log flush then unmounting
    # leaves no unmount record, so the log must be replayed.
    sync
    "${PY[@]}" "$HERE/manifest.py" walk "$MNT" >"$WORK/$name.body.jsonl"
    xfs_io -x -c "shutdown" "$MNT"
    umount_image
    xfs_repair -n -f "$WORK/$name.img" >"$WORK/$name.repair.log" 2>&1 || true
    if ! grep -q "metadata changes in a log" "$WORK/$name.repair.log"; then
        echo "$name: xfs_repair -n does not see a dirty log" >&2
        exit 1
    fi
    # The manifest describes the filesystem after log recovery: check that on
    # a copy by mounting it (which replays the log) and walking it again.
    cp --sparse=always "$WORK/$name.img" "$WORK/$name-replayed.img"
    mount_image "$name-replayed"
    "${PY[@]}" "$HERE/manifest.py" walk "$MNT" >"$WORK/$name-replayed.body.jsonl"
    umount_image
    if ! cmp -s "$WORK/$name.body.jsonl" "$WORK/$name-replayed.body.jsonl"; then
        diff "$WORK/$name.body.jsonl" "$WORK/$name-replayed.body.jsonl" | head >&2
        echo "$name: contents after log recovery differ from the manifest" >&2
        exit 1
    fi
    xfs_repair -n -f "$WORK/$name-replayed.img" >/dev/null 2>&1 ||
        { echo "$name: not clean even after log recovery" >&2; exit 1; }
    echo "log recovery on a copy reproduces the manifest and leaves a clean filesystem"
    finish "$name" "$opts" no "$WORK/$name.body.jsonl" "$WORK/$name-replayed.img"
}

build_v4() {
    unmounted v4 32 5c2bd000-0000-4000-8000-000000000009 "-m crc=0"
}

build_asciici() {
    rm -rf "$WORK/asciici.staging"
    "${PY[@]}" "$HERE/populate.py" asciici "$WORK/asciici.staging" "$WORK/asciici.proto"
    unmounted asciici 32 5c2bd000-0000-4000-8000-00000000000a "-n version=ci" \
        "$WORK/asciici.staging"
}

ALL=(empty default rmapbt nofinobt 1k 8ag large dirtylog v4 asciici)
if (($# > 0)); then
    WANT=("$@")
else
    WANT=("${ALL[@]}")
fi
for name in "${WANT[@]}"; do
    case " ${ALL[*]} " in
    *" $name "*) "build_$name" ;;
    *) echo "unknown image: $name (known: ${ALL[*]})" >&2; exit 1 ;;
    esac
done

log "compressed images"
total=0
for name in "${ALL[@]}"; do
    f=$IMAGES/$name.img.zst
    [[ -f $f ]] || continue
    bytes=$(stat -c %s "$f")
    total=$((total + bytes))
    printf '  %-10s %9d bytes  %s\n' "$name" "$bytes" "$(head -n1 "$MANIFESTS/$name.jsonl" |
        python3 -c 'import json,sys; h=json.load(sys.stdin); print(h["mkfs"] or "(defaults)", "repair_exit=%d" % h["xfs_repair_n_exit"])')"
done
printf '  %-10s %9d bytes\n' total "$total"
