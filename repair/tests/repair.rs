//! The commit protocol under crashes at every write, undo (also when
//! interrupted), and a btree built into reserved blocks.

use repair::{
    Disk, FaultyDisk, Marker, MemDisk, RepairError, Reservation, Sidecars, WriteSet, build_tree,
    commit, recover, undo,
};
use scrub::ExtentBitmap;
use xfbtree::formats::U64Map;
use xfbtree::{BloadOptions, BlockAddr, BlockStore, Btree, MemStore, Root};

const SIZE: usize = 64 * 1024;
const ID: &[u8] = b"test-image-0001";

/// A marker in sector 0: bit 0 of byte 7, with byte 8 a checksum (xor of
/// the sector's other bytes), like a superblock feature bit under a CRC.
struct TestMarker;

fn sum(s: &[u8]) -> u8 {
    s.iter()
        .enumerate()
        .filter(|(i, _)| *i != 8)
        .fold(0, |a, (_, b)| a ^ b)
}

impl Marker for TestMarker {
    fn location(&self) -> (u64, usize) {
        (0, 512)
    }
    fn is_set(&self, r: &[u8]) -> bool {
        r[7] & 1 != 0
    }
    fn set(&self, r: &mut [u8], on: bool) {
        r[7] = (r[7] & !1) | u8::from(on);
        r[8] = sum(r);
    }
}

fn original() -> Vec<u8> {
    let mut v: Vec<u8> = (0..SIZE).map(|i| (i * 31 % 251) as u8 & 0xfe).collect();
    v[8] = sum(&v[..512]);
    v
}

/// New blocks at 8K..20K, a header update in sector 1 and one covering the
/// marker sector (as a superblock counter update would).
fn writes() -> WriteSet {
    let mut w = WriteSet::new();
    for i in 0..3u64 {
        w.stage_new(8192 + i * 4096, vec![0xa0 + i as u8; 4096])
            .unwrap();
    }
    w.stage_live(512, vec![0x55; 512]).unwrap();
    let mut sb = original()[..512].to_vec();
    sb[100] = 0x77;
    w.stage_live(0, sb).unwrap();
    w
}

/// The image once `writes()` is committed (marker as it was before).
fn expected() -> Vec<u8> {
    let mut v = original();
    writes().overlay(0, &mut v);
    v[8] = sum(&v[..512]);
    v
}

fn sidecars(dir: &tempfile::TempDir) -> Sidecars {
    Sidecars::beside(&dir.path().join("image"))
}

#[test]
fn commit_then_undo_restores_every_byte() {
    let dir = tempfile::tempdir().unwrap();
    let sc = sidecars(&dir);
    let disk = MemDisk::new(original());
    let stats = commit(&disk, &writes(), &TestMarker, &sc, ID).unwrap();
    assert_eq!(disk.contents(), expected());
    assert!(
        !TestMarker.is_set(&disk.contents()[..512]),
        "marker restored"
    );
    assert!(!sc.journal_pending());
    assert!(stats.writes >= 7 && stats.undo_bytes > 0);
    // A second commit on top, then undo both.
    let mut w = WriteSet::new();
    w.stage_new(40960, vec![9; 1000]).unwrap();
    commit(&disk, &w, &TestMarker, &sc, ID).unwrap();
    let u = undo(&disk, &sc.undo, &sc, ID).unwrap();
    assert_eq!(u.commits, 2);
    assert_eq!(disk.contents(), original());
    // Undo is idempotent.
    undo(&disk, &sc.undo, &sc, ID).unwrap();
    assert_eq!(disk.contents(), original());
    // Not for another image.
    assert!(matches!(
        undo(&disk, &sc.undo, &sc, b"other"),
        Err(RepairError::WrongImage { .. })
    ));
}

#[test]
fn a_crash_at_any_write_recovers_to_the_new_state_and_never_shows_a_mixture_unmarked() {
    let total = {
        let dir = tempfile::tempdir().unwrap();
        let d = FaultyDisk::new(MemDisk::new(original()), u64::MAX);
        commit(&d, &writes(), &TestMarker, &sidecars(&dir), ID).unwrap();
        d.writes()
    };
    assert!(total >= 7);
    let (old, new) = (original(), expected());
    for k in 0..=total {
        let dir = tempfile::tempdir().unwrap();
        let sc = sidecars(&dir);
        let d = FaultyDisk::new(MemDisk::new(original()), k);
        let r = commit(&d, &writes(), &TestMarker, &sc, ID);
        assert_eq!(r.is_ok(), k == total, "k={k}");
        let disk = d.into_inner();
        let now = disk.contents();
        if now != old && now != new {
            assert!(
                TestMarker.is_set(&now[..512]),
                "k={k}: a half-written image must carry the marker"
            );
        }
        // Check and repair refuse until the journal is replayed.
        if k < total {
            assert!(sc.journal_pending(), "k={k}");
            assert!(matches!(
                commit(&disk, &writes(), &TestMarker, &sc, ID),
                Err(RepairError::JournalPending { .. })
            ));
        }
        recover(&disk, &sc, ID).unwrap();
        assert_eq!(disk.contents(), new, "k={k}: recovery finishes the commit");
        assert!(!sc.journal_pending());
        // And the undo file takes it back exactly.
        undo(&disk, &sc.undo, &sc, ID).unwrap();
        assert_eq!(disk.contents(), old, "k={k}: undo after recovery");
    }
}

#[test]
fn interrupted_undo_can_be_run_again() {
    let dir = tempfile::tempdir().unwrap();
    let sc = sidecars(&dir);
    let disk = MemDisk::new(original());
    commit(&disk, &writes(), &TestMarker, &sc, ID).unwrap();
    let after = disk.contents();
    for k in 0..6 {
        let d = FaultyDisk::new(MemDisk::new(after.clone()), k);
        let _ = undo(&d, &sc.undo, &sc, ID);
        let half = d.into_inner();
        undo(&half, &sc.undo, &sc, ID).unwrap();
        assert_eq!(half.contents(), original(), "k={k}");
    }
}

#[test]
fn damaged_journals_are_refused_not_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let sc = sidecars(&dir);
    let d = FaultyDisk::new(MemDisk::new(original()), 2);
    assert!(commit(&d, &writes(), &TestMarker, &sc, ID).is_err());
    let disk = d.into_inner();
    let bytes = std::fs::read(&sc.journal).unwrap();
    for cut in [20, bytes.len() / 2, bytes.len() - 1] {
        std::fs::write(&sc.journal, &bytes[..cut]).unwrap();
        assert!(recover(&disk, &sc, ID).is_err(), "cut at {cut}");
        assert!(sc.journal_pending(), "the journal stays for the operator");
    }
    // A leftover temporary journal means the commit never wrote anything.
    std::fs::remove_file(&sc.journal).unwrap();
    let mut tmp = sc.journal.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, b"partial").unwrap();
    let fresh = MemDisk::new(original());
    recover(&fresh, &sc, ID).unwrap();
    assert_eq!(fresh.contents(), original());
    assert!(!std::path::Path::new(&tmp).exists());
}

#[test]
fn a_btree_built_into_reserved_blocks_reads_back() {
    const BS: usize = 512;
    let free: ExtentBitmap = [(8, 20), (40, 200)].into_iter().collect();
    let busy: ExtentBitmap = [(50, 10)].into_iter().collect();
    let mut res = Reservation::new(free, &busy);
    let mut w = WriteSet::new();
    let n = 3000u64;
    let recs = (0..n).map(|k| Ok::<_, std::io::Error>((k * 2, k)));
    let offset_of = |a: BlockAddr| Some(a.0 * BS as u64);
    let (built, geo) = build_tree(
        &U64Map::default(),
        BS,
        n,
        recs,
        &BloadOptions::default(),
        &mut res,
        &mut w,
        &offset_of,
    )
    .unwrap();
    assert_eq!(res.taken().len() as u64, geo.total_blocks());
    assert!(
        res.taken().iter().all(|b| !(50..60).contains(b)),
        "busy blocks unused"
    );
    // Apply the staged writes to a device and read the tree back through a store.
    let disk = MemDisk::new(vec![0; 256 * BS]);
    for (off, _, data) in w.iter() {
        disk.write_at(data, off).unwrap();
    }
    let mut store = MemStore::new(BS);
    for b in 0..256u64 {
        let a = store.alloc().unwrap();
        let mut buf = vec![0; BS];
        disk.read_at(&mut buf, b * BS as u64).unwrap();
        store.write(a, |x| x.copy_from_slice(&buf)).unwrap();
    }
    let Root::Block { .. } = built.root else {
        panic!("block root expected")
    };
    let t = Btree::open(store, U64Map::default(), built.root).unwrap();
    assert_eq!(t.count_records().unwrap(), n);
    assert_eq!(t.get(&200).unwrap(), Some((200, 100)));
    let mut p = xfbtree::verify::Problems::default();
    t.verify(&mut p);
    assert!(p.0.is_empty(), "{:?}", p.0);
    // Not enough space: a clean error before anything is staged.
    let mut small = Reservation::new([(0, 3)].into_iter().collect(), &ExtentBitmap::new());
    let mut w2 = WriteSet::new();
    let recs = (0..n).map(|k| Ok::<_, std::io::Error>((k, k)));
    let e = build_tree(
        &U64Map::default(),
        BS,
        n,
        recs,
        &BloadOptions::default(),
        &mut small,
        &mut w2,
        &offset_of,
    );
    assert!(matches!(e, Err(RepairError::NoSpace { .. })));
    assert!(w2.is_empty());
}
