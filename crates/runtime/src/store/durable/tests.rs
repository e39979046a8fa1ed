//! What can be observed of a durable put without pulling the plug: the object is
//! complete under its name, with no staging file left, in directories that exist;
//! create-only puts keep their guarantee; multipart uploads land whole.

use std::sync::Arc;

use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

use super::DurableLocalStore;
use crate::store::IoObjectStore;

fn files_under(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let entry = entry.expect("entry");
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path.display().to_string());
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn a_put_leaves_the_complete_object_under_its_name_and_nothing_else() {
    let dir = tempfile::tempdir().expect("tmp");
    let root = dir.path().join("new/store");
    let store = DurableLocalStore::new(&root).expect("open");
    assert!(root.is_dir(), "the root is created");
    let body: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let loc = Path::from("db/table/2020/sst-1.parquet");
    store
        .put(&loc, PutPayload::from(body.clone()))
        .await
        .expect("put");
    let file = root.join("db/table/2020/sst-1.parquet");
    assert_eq!(std::fs::read(&file).expect("read"), body);
    assert_eq!(
        files_under(&root),
        vec![file.display().to_string()],
        "no staging file is left behind"
    );
    let got = store
        .get(&loc)
        .await
        .expect("get")
        .bytes()
        .await
        .expect("body");
    assert_eq!(got.as_ref(), body.as_slice());
    // Overwrite replaces the whole content.
    store
        .put(&loc, PutPayload::from_static(b"short"))
        .await
        .expect("overwrite");
    assert_eq!(std::fs::read(&file).expect("read"), b"short");
}

#[tokio::test]
async fn a_create_only_put_of_an_existing_object_fails_and_keeps_the_first() {
    let dir = tempfile::tempdir().expect("tmp");
    let store = DurableLocalStore::new(dir.path()).expect("open");
    let loc = Path::from("manifest/log/00000000000000000001.json");
    let create = PutOptions {
        mode: PutMode::Create,
        ..PutOptions::default()
    };
    store
        .put_opts(&loc, PutPayload::from_static(b"first"), create.clone())
        .await
        .expect("first create");
    let second = store
        .put_opts(&loc, PutPayload::from_static(b"second"), create)
        .await;
    assert!(
        matches!(second, Err(object_store::Error::AlreadyExists { .. })),
        "{second:?}"
    );
    let file = dir.path().join("manifest/log/00000000000000000001.json");
    assert_eq!(std::fs::read(&file).expect("read"), b"first");
    assert_eq!(files_under(dir.path()), vec![file.display().to_string()]);
}

#[tokio::test]
async fn a_multipart_upload_through_the_io_wrapper_lands_whole() {
    let dir = tempfile::tempdir().expect("tmp");
    let io = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("io runtime");
    let inner = Arc::new(DurableLocalStore::new(dir.path()).expect("open"));
    let store = IoObjectStore::new(inner, io.handle().clone());
    assert!(store.to_string().contains("DurableLocalStore"), "{store}");
    let loc = Path::from("t/big.parquet");
    let mut upload = store.put_multipart(&loc).await.expect("start");
    let parts: Vec<Vec<u8>> = (0..5u8).map(|p| vec![p; 10_000 + p as usize]).collect();
    let futures: Vec<_> = parts
        .iter()
        .map(|p| upload.put_part(PutPayload::from(p.clone())))
        .collect();
    // Not yet complete: the object is not visible under its name.
    assert!(store.head(&loc).await.is_err());
    futures::future::try_join_all(futures).await.expect("parts");
    upload.complete().await.expect("complete");
    let file = dir.path().join("t/big.parquet");
    assert_eq!(std::fs::read(&file).expect("read"), parts.concat());
    assert_eq!(files_under(dir.path()), vec![file.display().to_string()]);
    // An aborted upload leaves nothing.
    let mut aborted = store
        .put_multipart(&Path::from("t/gone.parquet"))
        .await
        .expect("start");
    aborted
        .put_part(PutPayload::from_static(b"x"))
        .await
        .expect("part");
    aborted.abort().await.expect("abort");
    assert_eq!(files_under(dir.path()), vec![file.display().to_string()]);
    drop(store);
    io.shutdown_background();
}

#[tokio::test]
async fn copies_and_renames_land_in_new_directories() {
    let dir = tempfile::tempdir().expect("tmp");
    let store = DurableLocalStore::new(dir.path()).expect("open");
    let (a, b, c) = (Path::from("a/x"), Path::from("b/c/y"), Path::from("d/z"));
    store
        .put(&a, PutPayload::from_static(b"data"))
        .await
        .expect("put");
    store.copy(&a, &b).await.expect("copy");
    store.rename(&b, &c).await.expect("rename");
    assert_eq!(std::fs::read(dir.path().join("a/x")).expect("a"), b"data");
    assert_eq!(std::fs::read(dir.path().join("d/z")).expect("c"), b"data");
    assert!(!dir.path().join("b/c/y").exists());
}
