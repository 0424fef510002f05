//! Store tests: images built here (layers with the tar crate), put, found, removed and collected.

use super::*;
use crate::image::unpack::tests::{sha256, LayerBuilder};
use std::io::Write;

const GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// Stores a layer's blob and unpacked directory; returns its record.
fn add_layer(store: &Store, tar: &[u8]) -> Layer {
    let blob = gzip(tar);
    let digest = sha256(&blob);
    store.content().write(&digest, &blob).unwrap();
    let diff_id = sha256(tar);
    store.unpack_layer(&mut &blob[..], GZIP, &diff_id).unwrap();
    Layer {
        digest,
        diff_id,
        media_type: GZIP.into(),
        size: blob.len() as u64,
    }
}

/// Stores config and manifest blobs for `layers` and records the image as `name`.
fn add_image(store: &Store, name: &str, config: &str, layers: Vec<Layer>) -> Image {
    let config_digest = sha256(config.as_bytes());
    store
        .content()
        .write(&config_digest, config.as_bytes())
        .unwrap();
    let manifest = format!(
        "{{\"config\":\"{config_digest}\",\"layers\":{}}}",
        layers.len()
    );
    let manifest_digest = sha256(manifest.as_bytes());
    store
        .content()
        .write(&manifest_digest, manifest.as_bytes())
        .unwrap();
    let image = Image {
        name: name.into(),
        digest: manifest_digest.clone(),
        manifest: manifest_digest,
        config: config_digest,
        layers,
        stored_at: "2024-01-01T00:00:00Z".into(),
    };
    store.put(&image).unwrap();
    image
}

fn busybox(store: &Store) -> Image {
    let base = add_layer(store, &LayerBuilder::new().file("bin/sh", b"sh").finish());
    let top = add_layer(store, &LayerBuilder::new().file("etc/motd", b"hi").finish());
    add_image(
        store,
        "docker.io/library/busybox:latest",
        "{\"busybox\":1}",
        vec![base, top],
    )
}

fn hex(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap()
}

#[test]
fn put_get_and_resolve() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let image = busybox(&store);
    assert_eq!(store.images().unwrap(), vec![image.clone()]);
    let reference = Reference {
        registry: "docker.io".into(),
        repository: "library/busybox".into(),
        tag: Some("latest".into()),
        digest: None,
    };
    assert_eq!(store.get(&reference).unwrap().as_ref(), Some(&image));

    let id = image.config.clone();
    for query in [
        image.name.clone(),
        "busybox".into(),
        "busybox:latest".into(),
        id.clone(),
        hex(&id).to_string(),
        hex(&id)[..4].to_string(),
        image.short_id().to_string(),
        format!("sha256:{}", &hex(&id)[..8]),
        image.digest.clone(),
        format!("busybox@{}", image.digest),
    ] {
        assert_eq!(store.resolve(&query).unwrap(), image, "{query}");
    }
    for query in ["alpine", &hex(&id)[..3], "docker.io/library/busybox:1.36"] {
        assert!(
            matches!(store.resolve(query), Err(Error::NotFound(_))),
            "{query}"
        );
    }
    assert!(matches!(
        store.resolve("Bad Name!"),
        Err(Error::InvalidReference { .. })
    ));

    for layer in &image.layers {
        let dir = store.layer_dir(&layer.diff_id).unwrap();
        assert!(dir.starts_with(store.root().join("layers/sha256")));
    }
    assert_eq!(
        fs::read(
            store
                .layer_dir(&image.layers[1].diff_id)
                .unwrap()
                .join("etc/motd")
        )
        .unwrap(),
        b"hi"
    );
}

#[test]
fn ambiguous_id_prefixes_list_the_candidates() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let first = add_image(&store, "127.0.0.1:5000/a:1", "{\"n\":0}", Vec::new());
    // Find a second config whose id shares the first 4 hex digits.
    let prefix = &hex(&first.config)[..4];
    let config = (1..)
        .map(|n| format!("{{\"n\":{n}}}"))
        .find(|c| hex(&sha256(c.as_bytes())).starts_with(prefix))
        .unwrap();
    let second = add_image(&store, "127.0.0.1:5000/b:1", &config, Vec::new());
    let err = store.resolve(prefix).unwrap_err().to_string();
    assert!(err.contains("ambiguous"), "{err}");
    assert!(
        err.contains("127.0.0.1:5000/a:1") && err.contains("127.0.0.1:5000/b:1"),
        "{err}"
    );
    // Enough digits tell them apart.
    let longer = &hex(&second.config)[..16];
    assert_eq!(store.resolve(longer).unwrap(), second);
}

#[test]
fn put_requires_every_blob_and_layer() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let image = busybox(&store);

    let mut missing_blob = image.clone();
    missing_blob.name = "docker.io/library/other:latest".into();
    missing_blob.config = sha256(b"never stored");
    let err = store.put(&missing_blob).unwrap_err().to_string();
    assert!(err.contains("not in the store"), "{err}");

    let mut missing_layer = image.clone();
    missing_layer.name = "docker.io/library/other:latest".into();
    missing_layer.layers[0].diff_id = sha256(b"never unpacked");
    let err = store.put(&missing_layer).unwrap_err().to_string();
    assert!(err.contains("not unpacked"), "{err}");

    assert_eq!(store.images().unwrap(), vec![image]);
}

#[test]
fn unpack_layer_checks_the_diff_id_and_keeps_nothing_on_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let tar = LayerBuilder::new().file("a", b"a").finish();
    let blob = gzip(&tar);
    let wrong = sha256(b"something else");
    let err = store
        .unpack_layer(&mut &blob[..], GZIP, &wrong)
        .unwrap_err();
    assert!(
        matches!(err, Error::DigestMismatch { ref actual, .. } if *actual == sha256(&tar)),
        "{err}"
    );
    let layers: Vec<_> = fs::read_dir(dir.path().join("layers"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(layers, ["sha256"], "no temp dir left");
    assert_eq!(
        fs::read_dir(dir.path().join("layers/sha256"))
            .unwrap()
            .count(),
        0
    );

    let err = store.unpack_layer(
        &mut &blob[..],
        "application/vnd.oci.image.config.v1+json",
        &sha256(&tar),
    );
    assert!(err
        .unwrap_err()
        .to_string()
        .contains("unsupported layer media type"));

    // Once there, unpacking again is a no-op that still reads the whole blob.
    let path = store
        .unpack_layer(&mut &blob[..], GZIP, &sha256(&tar))
        .unwrap();
    let mut rest = &blob[..];
    assert_eq!(
        store.unpack_layer(&mut rest, GZIP, &sha256(&tar)).unwrap(),
        path
    );
    assert!(rest.is_empty());
}

#[test]
fn remove_collects_what_no_image_uses() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let image = busybox(&store);
    // A second image sharing the base layer.
    let extra = add_layer(&store, &LayerBuilder::new().file("app", b"app").finish());
    let app = add_image(
        &store,
        "127.0.0.1:5000/team/app:1",
        "{\"app\":1}",
        vec![image.layers[0].clone(), extra],
    );

    let removed = store.remove("busybox").unwrap();
    assert_eq!(removed, vec![image.clone()]);
    assert_eq!(store.images().unwrap(), vec![app.clone()]);
    assert!(
        store.layer_dir(&image.layers[0].diff_id).is_some(),
        "shared layer kept"
    );
    assert!(store.content().has(&image.layers[0].digest));
    assert!(
        store.layer_dir(&image.layers[1].diff_id).is_none(),
        "unused layer removed"
    );
    assert!(!store.content().has(&image.layers[1].digest));
    assert!(!store.content().has(&image.config));
    assert!(matches!(store.remove("busybox"), Err(Error::NotFound(_))));

    // By id: every name of the image goes.
    let mut alias = app.clone();
    alias.name = "127.0.0.1:5000/team/app:latest".into();
    store.put(&alias).unwrap();
    let removed = store.remove(app.short_id()).unwrap();
    assert_eq!(removed.len(), 2);
    assert!(store.images().unwrap().is_empty());
    assert!(store.content().list().unwrap().is_empty());
    assert_eq!(
        fs::read_dir(dir.path().join("layers/sha256"))
            .unwrap()
            .count(),
        0
    );
    let leftovers: Vec<_> = fs::read_dir(dir.path().join("layers"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers, ["sha256"]);
}

#[test]
fn images_in_use_are_not_removed_and_their_layers_survive_replacement() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let image = busybox(&store);
    let layers: Vec<_> = image
        .layers
        .iter()
        .map(|l| store.layer_dir(&l.diff_id).unwrap())
        .collect();
    // Reserving is enough to count as in use (no mount needed for this test).
    store
        .snapshotter()
        .reserve("ctr-1", &image.name, &layers)
        .unwrap();

    let err = store.remove(&image.name).unwrap_err();
    assert!(
        matches!(err, Error::InUse { ref container, .. } if container == "ctr-1"),
        "{err}"
    );
    assert_eq!(store.images().unwrap(), vec![image.clone()]);

    // The name now points at another image: the old layers still back the container.
    let other = add_layer(&store, &LayerBuilder::new().file("new", b"new").finish());
    add_image(&store, &image.name, "{\"v\":2}", vec![other]);
    let pruned = store.prune().unwrap();
    assert!(pruned.layers.is_empty(), "{pruned:?}");
    assert!(pruned.blobs.contains(&image.config));
    assert!(store.layer_dir(&image.layers[1].diff_id).is_some());

    store.remove_rootfs("ctr-1").unwrap();
    let pruned = store.prune().unwrap();
    assert_eq!(pruned.layers.len(), 2, "{pruned:?}");
}

#[test]
fn prune_removes_strays_and_stale_temporaries_only() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let image = busybox(&store);
    let stray = sha256(b"stray");
    store.content().write(&stray, b"stray").unwrap();

    let ingest = store.content().ingest_dir();
    let old = std::time::SystemTime::now() - Duration::from_secs(2 * 3600);
    let set_old = |path: &Path| {
        let t = nix::sys::time::TimeSpec::from(old.duration_since(std::time::UNIX_EPOCH).unwrap());
        nix::sys::stat::utimensat(
            nix::fcntl::AT_FDCWD,
            path,
            &t,
            &t,
            nix::sys::stat::UtimensatFlags::NoFollowSymlink,
        )
        .unwrap();
    };
    fs::write(ingest.join("stale"), b"x").unwrap();
    set_old(&ingest.join("stale"));
    fs::write(ingest.join("fresh"), b"x").unwrap();
    let layers = dir.path().join("layers");
    fs::create_dir_all(layers.join("tmp-stale/sub")).unwrap();
    set_old(&layers.join("tmp-stale"));
    fs::create_dir(layers.join("tmp-fresh")).unwrap();
    fs::create_dir(layers.join("del-interrupted")).unwrap();
    // An import killed midway leaves its scratch directory in the root.
    fs::create_dir_all(dir.path().join("import-1-0/blobs")).unwrap();
    set_old(&dir.path().join("import-1-0"));
    fs::create_dir(dir.path().join("import-2-0")).unwrap();

    let pruned = store.prune().unwrap();
    assert_eq!(pruned.blobs, vec![stray.clone()]);
    assert_eq!(pruned.bytes, 5);
    assert!(pruned.layers.is_empty());
    assert!(!ingest.join("stale").exists() && ingest.join("fresh").exists());
    assert!(!layers.join("tmp-stale").exists() && layers.join("tmp-fresh").exists());
    assert!(!layers.join("del-interrupted").exists());
    assert!(!dir.path().join("import-1-0").exists() && dir.path().join("import-2-0").exists());
    // Everything the image needs is still there.
    store.put(&image).unwrap();
    assert_eq!(store.prune().unwrap(), Pruned::default());
}

#[test]
fn index_blob_and_platform_manifest_are_both_kept() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut image = busybox(&store);
    let index = format!("{{\"manifests\":[\"{}\"]}}", image.manifest);
    image.digest = sha256(index.as_bytes());
    store
        .content()
        .write(&image.digest, index.as_bytes())
        .unwrap();
    store.put(&image).unwrap();
    store.prune().unwrap();
    assert!(store.content().has(&image.digest));
    assert!(store.content().has(&image.manifest));
    assert_eq!(store.resolve(&image.digest).unwrap(), image);
    assert_eq!(store.resolve(&image.manifest).unwrap(), image);
}

#[test]
fn container_roots_come_from_the_image_layers() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "mounts overlayfs: run as root"
    );
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let image = busybox(&store);
    let snapshot = store.prepare_rootfs("ctr-store", &image).unwrap();
    let cleanup = scopeguard(&store, "ctr-store");
    assert_eq!(snapshot.image, image.name);
    assert_eq!(fs::read(snapshot.rootfs.join("bin/sh")).unwrap(), b"sh");
    assert_eq!(fs::read(snapshot.rootfs.join("etc/motd")).unwrap(), b"hi");
    assert!(matches!(
        store.remove(&image.name),
        Err(Error::InUse { .. })
    ));

    let mut unknown = image.clone();
    unknown.name = "docker.io/library/unknown:latest".into();
    assert!(matches!(
        store.prepare_rootfs("ctr-2", &unknown),
        Err(Error::NotFound(_))
    ));

    store.remove_rootfs("ctr-store").unwrap();
    drop(cleanup);
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mountinfo.contains(dir.path().to_str().unwrap()),
        "{mountinfo}"
    );
    store.remove(&image.name).unwrap();
    assert!(store.content().list().unwrap().is_empty());
}

/// Removes a container root even when the test fails half-way.
fn scopeguard<'a>(store: &'a Store, id: &'a str) -> impl Drop + 'a {
    struct Guard<'a>(&'a Store, &'a str);
    impl Drop for Guard<'_> {
        fn drop(&mut self) {
            let _ = self.0.remove_rootfs(self.1);
        }
    }
    Guard(store, id)
}
