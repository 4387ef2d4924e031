//! Tests of the store: restarts with corrupt and partial objects, eviction, the memory
//! tier, collapsed misses, revalidated policies and incomplete fetches.

#![allow(clippy::unwrap_used)]
use super::*;
use http::{Request, Response};
use std::time::SystemTime;

fn policy(url: &str) -> CachePolicy {
    let req = Request::get(url).body(()).unwrap().into_parts().0;
    let res = Response::builder()
        .header("cache-control", "max-age=60")
        .body(())
        .unwrap()
        .into_parts()
        .0;
    CachePolicy::new_options(&req, &res, SystemTime::now(), Default::default())
}

fn config(dir: &Path, max: u64) -> StoreConfig {
    StoreConfig {
        dir: dir.to_path_buf(),
        max_bytes: max,
        memory_bytes: 1000,
        memory_object_max: 400,
        object_max: 1 << 20,
    }
}

fn meta(url: &str) -> Meta {
    Meta {
        url: url.into(),
        policy: policy(url),
    }
}

fn head() -> http::response::Parts {
    Response::builder().body(()).unwrap().into_parts().0
}

fn put(store: &Store, url: &str, body: &[u8]) {
    let Role::Leader(f) = store.begin(url).unwrap() else {
        panic!("not leader")
    };
    f.set_head(head(), Some(&meta(url))).unwrap();
    f.write(body).unwrap();
    store.finish(&f, true).unwrap();
}

fn body(store: &Store, url: &str) -> Vec<u8> {
    let obj = store.get(url).unwrap();
    let mut b = vec![0u8; usize::try_from(obj.body_len).unwrap()];
    File::open(&obj.path)
        .unwrap()
        .read_exact_at(&mut b, obj.body_offset)
        .unwrap();
    b
}

#[test]
fn survives_restart_and_drops_corrupt_and_partial_objects() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(config(dir.path(), 1 << 20)).unwrap();
        put(&store, "http://o/a", b"hello");
        put(&store, "http://o/b", &[7u8; 3000]);
        // an interrupted download: begun, written, never finished
        let Role::Leader(f) = store.begin("http://o/c").unwrap() else {
            panic!()
        };
        f.set_head(head(), Some(&meta("http://o/c"))).unwrap();
        f.write(b"partial").unwrap();
        std::mem::forget(f);
    }
    // damage b: truncate its body
    let b = dir.path().join("objects").join(key_of("http://o/b"));
    let len = fs::metadata(&b).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&b)
        .unwrap()
        .set_len(len - 1)
        .unwrap();
    fs::write(dir.path().join("objects").join("junk"), b"not an object").unwrap();
    let store = Store::open(config(dir.path(), 1 << 20)).unwrap();
    assert_eq!(body(&store, "http://o/a"), b"hello");
    assert!(store.get("http://o/b").is_none());
    assert!(store.get("http://o/c").is_none());
    assert_eq!(store.usage().1, 1);
    assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
    assert!(!b.exists());
}

#[test]
fn evicts_least_recently_used_and_keeps_within_bound() {
    let probe = tempfile::tempdir().unwrap();
    let one = {
        let store = Store::open(config(probe.path(), 1 << 20)).unwrap();
        put(&store, "http://o/0", &[0u8; 800]);
        store.usage().0
    };
    let bound = 3 * one + one / 2;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(config(dir.path(), bound)).unwrap();
    put(&store, "http://o/1", &[1u8; 800]);
    put(&store, "http://o/2", &[2u8; 800]);
    let _ = store.get("http://o/1");
    put(&store, "http://o/3", &[3u8; 800]);
    put(&store, "http://o/4", &[4u8; 800]);
    assert!(store.usage().0 <= bound);
    assert_eq!(store.usage().1, 3);
    assert!(
        store.get("http://o/2").is_none(),
        "least recently used goes first"
    );
    assert!(store.get("http://o/1").is_some());
    assert!(store.get("http://o/4").is_some());
}

#[test]
fn small_objects_are_in_memory_and_misses_collapse() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(config(dir.path(), 1 << 20)).unwrap();
    let Role::Leader(f) = store.begin("http://o/x").unwrap() else {
        panic!()
    };
    let Role::Follower(g) = store.begin("http://o/x").unwrap() else {
        panic!("second miss must follow")
    };
    let rx = g.subscribe();
    f.set_head(head(), Some(&meta("http://o/x"))).unwrap();
    f.write(b"abc").unwrap();
    let p = rx.borrow().clone();
    assert!(p.shareable);
    assert_eq!(p.written, 3);
    let mut seen = [0u8; 3];
    g.file().read_exact_at(&mut seen, p.body_offset).unwrap();
    assert_eq!(&seen, b"abc");
    store.finish(&f, true).unwrap();
    assert_eq!(rx.borrow().done, Some(true));
    assert_eq!(
        store.get("http://o/x").unwrap().memory.as_deref(),
        Some(&b"abc"[..])
    );
    assert_eq!(body(&store, "http://o/x"), b"abc");
    assert!(matches!(
        store.begin("http://o/x").unwrap(),
        Role::Leader(_)
    ));
}

#[test]
fn a_revalidated_policy_survives_restart_and_only_for_its_object() {
    let dir = tempfile::tempdir().unwrap();
    let fresh = |p: &CachePolicy| p.time_to_live(SystemTime::now()).as_secs();
    let updated = {
        let req = Request::get("http://o/r").body(()).unwrap().into_parts().0;
        let res = Response::builder()
            .header("cache-control", "max-age=7200")
            .body(())
            .unwrap()
            .into_parts()
            .0;
        CachePolicy::new_options(&req, &res, SystemTime::now(), Default::default())
    };
    {
        let store = Store::open(config(dir.path(), 1 << 20)).unwrap();
        put(&store, "http://o/r", b"body");
        assert!(fresh(&store.get("http://o/r").unwrap().meta.policy) <= 60);
        store.update_policy("http://o/r", updated.clone()).unwrap();
        assert!(fresh(&store.get("http://o/r").unwrap().meta.policy) > 3600);
    }
    let side = dir
        .path()
        .join("objects")
        .join(format!("{}{SIDECAR}", key_of("http://o/r")));
    assert!(side.exists());
    let saved = fs::read(&side).unwrap();
    {
        let store = Store::open(config(dir.path(), 1 << 20)).unwrap();
        let obj = store.get("http://o/r").unwrap();
        assert!(fresh(&obj.meta.policy) > 3600, "the sidecar was applied");
        assert_eq!(body(&store, "http://o/r"), b"body");
        // A new object for the URL: its old sidecar goes.
        put(&store, "http://o/r", b"new body");
        assert!(!side.exists());
    }
    // A sidecar that names another object (as a crash between the two steps would leave)
    // is ignored and removed.
    fs::write(&side, saved).unwrap();
    let store = Store::open(config(dir.path(), 1 << 20)).unwrap();
    assert!(fresh(&store.get("http://o/r").unwrap().meta.policy) <= 60);
    assert_eq!(body(&store, "http://o/r"), b"new body");
    assert!(!side.exists());
}

#[test]
fn an_incomplete_fetch_is_not_stored() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(config(dir.path(), 1 << 20)).unwrap();
    let Role::Leader(f) = store.begin("http://o/y").unwrap() else {
        panic!()
    };
    f.set_head(head(), Some(&meta("http://o/y"))).unwrap();
    f.write(b"half").unwrap();
    store.finish(&f, false).unwrap();
    assert!(store.get("http://o/y").is_none());
    assert_eq!(fs::read_dir(dir.path().join("objects")).unwrap().count(), 0);
    assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
}
