//! XfBlob against a `HashMap<cookie, bytes>` model.

use std::collections::HashMap;

use proptest::prelude::*;
use xfile::{BlobCookie, MemoryBudget, StagingError, XfBlob};

use crate::{check_budget, check_file, small_pages};

#[derive(Debug, Clone)]
enum Op {
    Store(Vec<u8>),
    StoreBig(usize, u8),
    Load(usize),
    Free(usize),
    Forge(u64, u64),
    Truncate,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => proptest::collection::vec(any::<u8>(), 0..300).prop_map(Op::Store),
        1 => (4000usize..20_000, any::<u8>()).prop_map(|(n, b)| Op::StoreBig(n, b)),
        4 => any::<usize>().prop_map(Op::Load),
        2 => any::<usize>().prop_map(Op::Free),
        2 => (prop_oneof![0u64..100_000, any::<u64>()], prop_oneof![0u64..50, any::<u64>()])
            .prop_map(|(o, i)| Op::Forge(o, i)),
        1 => Just(Op::Truncate),
    ]
}

fn run(ops: Vec<Op>) {
    let budget = MemoryBudget::new(3 * 4096);
    let mut b = XfBlob::with_options("blobs", &budget, small_pages()).expect("create");
    let mut live: HashMap<BlobCookie, Vec<u8>> = HashMap::new();
    let mut order: Vec<BlobCookie> = Vec::new();
    let mut dead: Vec<BlobCookie> = Vec::new();
    let check_dead = |b: &XfBlob, c: BlobCookie| {
        let e = b.load(c).expect_err("dead cookie must not load");
        assert!(matches!(e, StagingError::InvalidCookie { .. }), "{e}");
        assert!(b.len_of(c).is_err());
    };
    for op in ops {
        match op {
            Op::Store(data) => {
                let c = b.store(&data).expect("store");
                assert!(live.insert(c, data).is_none(), "cookie reused");
                order.push(c);
            }
            Op::StoreBig(n, fill) => {
                let data = vec![fill; n];
                let c = b.store(&data).expect("store");
                live.insert(c, data);
                order.push(c);
            }
            Op::Load(i) => {
                if !order.is_empty() {
                    let c = order[i % order.len()];
                    assert_eq!(&b.load(c).expect("load"), &live[&c]);
                    assert_eq!(b.len_of(c).expect("len_of"), live[&c].len() as u64);
                }
                if !dead.is_empty() {
                    check_dead(&b, dead[i % dead.len()]);
                }
            }
            Op::Free(i) => {
                if !order.is_empty() {
                    let c = order.swap_remove(i % order.len());
                    b.free(c).expect("free");
                    live.remove(&c);
                    dead.push(c);
                    check_dead(&b, c);
                    assert!(b.free(c).is_err(), "double free");
                }
            }
            Op::Forge(offset, id) => {
                let c = BlobCookie::from_raw(offset, id);
                match live.get(&c) {
                    Some(data) => assert_eq!(&b.load(c).expect("load"), data),
                    None => check_dead(&b, c),
                }
            }
            Op::Truncate => {
                b.truncate().expect("truncate");
                dead.append(&mut order);
                live.clear();
            }
        }
        assert_eq!(b.count(), live.len() as u64);
        assert_eq!(b.stats().records, live.len() as u64);
        check_file(b.file());
        check_budget(&budget);
    }
    for (c, data) in &live {
        assert_eq!(&b.load(*c).expect("load"), data);
    }
    for c in dead {
        check_dead(&b, c);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn xfblob_matches_hashmap(ops in proptest::collection::vec(op(), 1..80)) {
        run(ops);
    }
}

#[test]
fn cookies_fit_in_records_and_forgeries_fail() {
    use zerocopy::{FromBytes, IntoBytes};
    let budget = MemoryBudget::new(1 << 20);
    let mut b = XfBlob::new("names", &budget).expect("create");
    let c = b.store(b"lost+found").expect("store");
    // A cookie round-trips through bytes (it can live inside a record).
    let bytes = c.as_bytes().to_vec();
    let back = BlobCookie::read_from_bytes(&bytes).expect("16 bytes");
    assert_eq!(b.load(back).expect("load"), b"lost+found");
    // Every single-bit change of the cookie is rejected.
    for bit in 0..128 {
        let mut forged = bytes.clone();
        forged[bit / 8] ^= 1 << (bit % 8);
        let f = BlobCookie::read_from_bytes(&forged).expect("16 bytes");
        assert!(b.load(f).is_err(), "bit {bit} flip accepted");
    }
    // After truncate, a new blob at the same offset does not answer to the
    // old cookie.
    b.truncate().expect("truncate");
    let c2 = b.store(b"other").expect("store");
    assert_eq!(c2.to_raw().0, c.to_raw().0);
    assert!(b.load(c).is_err());
    assert_eq!(b.load(c2).expect("load"), b"other");
    let e = b.load(c).expect_err("stale");
    assert!(e.to_string().contains("does not name a live blob"), "{e}");
}
