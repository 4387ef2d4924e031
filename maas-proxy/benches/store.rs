//! Benchmarks of the store on the hit path: looking up a small object held in the memory
//! tier (the index lookup, the LRU mark, and the shared body handed out without a copy).
//!
//! Run with `cargo bench -p maas-proxy --features tokio --bench store`.

use std::hint::black_box;
use std::time::SystemTime;

use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response};
use maas_proxy::store::{Meta, Role, Store, StoreConfig};

fn memory_tier(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = Store::open(StoreConfig {
        dir: dir.path().to_path_buf(),
        ..StoreConfig::default()
    })
    .expect("a store");
    // A thousand small objects, as a warm cache of index files and small packages has.
    for i in 0..1000 {
        let url =
            format!("http://archive.ubuntu.com/ubuntu/pool/main/p/pkg{i}/pkg{i}_1.0_amd64.deb");
        let req = Request::get(url.as_str())
            .body(())
            .expect("a request")
            .into_parts()
            .0;
        let res = Response::builder()
            .header("cache-control", "max-age=3600")
            .body(())
            .expect("a response")
            .into_parts()
            .0;
        let policy =
            maas_proxy::policy::new_policy(&req, &res, SystemTime::now()).expect("storable");
        let Ok(Role::Leader(fetch)) = store.begin(&url) else {
            panic!("a new URL leads its fetch")
        };
        fetch
            .set_head(
                res,
                Some(&Meta {
                    url: url.clone(),
                    policy,
                }),
            )
            .expect("written");
        fetch.write(&[7u8; 1024]).expect("written");
        store.finish(&fetch, true).expect("stored");
    }
    let url = "http://archive.ubuntu.com/ubuntu/pool/main/p/pkg500/pkg500_1.0_amd64.deb";
    assert!(
        store.get(url).and_then(|o| o.memory).is_some(),
        "in the memory tier"
    );
    c.bench_function("store: memory-tier get of a 1 KiB object", |b| {
        b.iter(|| store.get(black_box(url)))
    });
}

criterion_group!(benches, memory_tier);
criterion_main!(benches);
