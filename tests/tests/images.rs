//! Images end to end: a real `docker-registry` on loopback, images the tests
//! build and push with skopeo, pulled and imported with the `peapod` CLI, and
//! the resulting root filesystems checked file by file through `runtime::image`.
//!
//! Each test starts its own registry on a free 127.0.0.1 port and gives the
//! CLI a store root of its own (`peapod --root <tempdir>`). What the tests
//! rely on from the CLI:
//!
//! ```text
//! peapod --root R pull [--quiet] [--platform OS/ARCH] [--creds USER:PASS] NAME
//! peapod --root R images | rmi NAME | image prune | image import FILE
//! ```
//!
//! and, for credentials from a docker `config.json`, `$DOCKER_CONFIG/config.json`
//! or `pull --docker-config FILE`.
//! Pulls name `127.0.0.1:<port>/…` without any insecure-registry flag:
//! loopback registries are reached over plain HTTP, as Docker does.
//!
//! The binary is `$PEAPOD`, else `peapod` in the cargo profile directory of
//! this test (`cargo build -p peapod-kubelet --bin peapod`).

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use peapod_tests::oci::{
    busybox_layer, digest, docker_save, push, BuiltImage, Compression, Entry, ImageSpec, Layer,
    OciLayout,
};
use peapod_tests::peapod::Peapod;
use peapod_tests::proxy::CuttingProxy;
use peapod_tests::token::{self, TokenRequest};
use peapod_tests::tree;
use peapod_tests::{Output, Registry};
use runtime::image::{Image, Store};
use tempfile::TempDir;

/// A container root prepared from a stored image; removed on drop.
struct Rootfs {
    store: Store,
    id: String,
    path: PathBuf,
}

impl Rootfs {
    fn prepare(store: Store, image: &Image) -> Rootfs {
        static N: AtomicUsize = AtomicUsize::new(0);
        let id = format!(
            "pp-img-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let snapshot = store
            .prepare_rootfs(&id, image)
            .unwrap_or_else(|e| panic!("prepare_rootfs {id} of {}: {e}", image.name));
        let overlay_available = fs::read_to_string("/proc/filesystems")
            .is_ok_and(|f| f.lines().any(|l| l.ends_with("\toverlay")));
        let rootfs = Rootfs {
            store,
            id,
            path: snapshot.rootfs.clone(),
        };
        // The copy fallback is for hosts without overlayfs; here, the real thing.
        assert_eq!(
            snapshot.overlay, overlay_available,
            "rootfs {:?}: overlay {} while the kernel has overlayfs: {overlay_available}",
            snapshot.rootfs, snapshot.overlay
        );
        rootfs
    }
}

impl Drop for Rootfs {
    fn drop(&mut self) {
        if let Err(err) = self.store.remove_rootfs(&self.id) {
            eprintln!("remove_rootfs {}: {err}", self.id);
        }
    }
}

/// Panics unless the command failed and its stderr says one of `needles`
/// (case-insensitive).
#[track_caller]
fn assert_fails_with(out: Output, needles: &[&str]) {
    let out = out.failed();
    let text = out.stderr.to_lowercase();
    assert!(
        needles.iter().any(|n| text.contains(&n.to_lowercase())),
        "expected an error saying one of {needles:?}: {out}"
    );
}

/// Whether `peapod images` output lists `repository` with `tag` (as
/// `repo:tag` or in separate columns).
fn lists(images: &str, repository: &str, tag: &str) -> bool {
    images.lines().any(|line| {
        line.contains(&format!("{repository}:{tag}"))
            || (line.split_whitespace().any(|w| w == repository)
                && line.split_whitespace().any(|w| w == tag))
    })
}

/// Every blob under the store hashes to its name; no ingest leftovers; each
/// recorded image's blobs and layer directories are present. Returns the records.
#[track_caller]
fn assert_consistent(store: &Store) -> Vec<Image> {
    let content = store.content();
    for blob in content.list().expect("list blobs") {
        let path = content.path(&blob).unwrap();
        let bytes = fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        assert_eq!(
            digest(&bytes),
            blob,
            "blob {} does not match its name",
            path.display()
        );
    }
    let ingest = store.root().join("content/ingest");
    let leftovers: Vec<_> = fs::read_dir(&ingest)
        .map(|d| d.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(
        leftovers.is_empty(),
        "ingest leftovers in {}: {leftovers:?}",
        ingest.display()
    );
    let images = store.images().expect("list images");
    for image in &images {
        for blob in [&image.manifest, &image.config] {
            assert!(content.has(blob), "{}: blob {blob} missing", image.name);
        }
        for layer in &image.layers {
            assert!(
                content.has(&layer.digest),
                "{}: layer blob {} missing",
                image.name,
                layer.digest
            );
            assert!(
                store.layer_dir(&layer.diff_id).is_some(),
                "{}: layer {} not unpacked",
                image.name,
                layer.diff_id
            );
        }
    }
    images
}

/// A layout in a temp dir.
fn layout() -> (TempDir, OciLayout) {
    let dir = tempfile::Builder::new()
        .prefix("pp-layout-")
        .tempdir()
        .unwrap();
    let layout = OciLayout::create(dir.path());
    (dir, layout)
}

/// A small layer of one file.
fn file_layer(compression: Compression, path: &str, content: &str) -> Layer {
    Layer::new(compression, vec![Entry::file(path, content)])
}

/// Deterministic bytes that do not compress: `len` bytes from a seed.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

/// The multi-layer image of the rootfs test: busybox (gzip), a zstd layer
/// with modes, owners, links and things to delete, and a plain layer that
/// deletes files and a directory and makes a directory opaque.
fn layered_image() -> ImageSpec {
    let dir_with = |path: &str, mode, uid, gid| Entry::Dir {
        path: path.into(),
        mode,
        uid,
        gid,
    };
    let middle = vec![
        Entry::dir("etc"),
        Entry::file("etc/motd", "hello from layer 2\n"),
        Entry::file("etc/old.conf", "to be deleted\n"),
        dir_with("srv", 0o750, 1000, 1000),
        Entry::file_with("srv/secret", "s3cret\n", 0o600, 1000, 100),
        Entry::file_with("srv/tool", "#!/bin/sh\necho tool\n", 0o4755, 0, 0),
        Entry::file_with("srv/data.bin", noise(1, 4096), 0o640, 33, 33),
        Entry::hardlink("srv/data.link", "srv/data.bin"),
        Entry::symlink("srv/motd", "../etc/motd"),
        Entry::symlink("srv/dangling", "/nonexistent/target"),
        Entry::dir("deleted"),
        Entry::file("deleted/a", "a\n"),
        Entry::dir("deleted/sub"),
        Entry::file("deleted/sub/b", "b\n"),
        dir_with("opaque", 0o755, 0, 0),
        Entry::file("opaque/lower1", "lower\n"),
        Entry::file("opaque/lower2", "lower\n"),
    ];
    let top = vec![
        Entry::dir("etc"),
        Entry::whiteout("etc/old.conf"),
        Entry::file_with("etc/motd", "replaced in layer 3\n", 0o640, 0, 0),
        Entry::whiteout("deleted"),
        dir_with("opaque", 0o700, 0, 0),
        Entry::opaque("opaque"),
        Entry::file("opaque/upper", "upper\n"),
        dir_with("srv", 0o750, 1000, 1000),
        Entry::whiteout("srv/dangling"),
    ];
    let mut spec = ImageSpec::new(vec![
        busybox_layer(Compression::Gzip),
        Layer::new(Compression::Zstd, middle),
        Layer::new(Compression::Plain, top),
    ]);
    spec.config.entrypoint = Some(vec!["/bin/sh".into(), "-c".into()]);
    spec.config.cmd = Some(vec!["echo hi".into()]);
    spec.config.working_dir = Some("/srv".into());
    spec.config.user = Some("1000:1000".into());
    spec.config.env.push("GREETING=hello".into());
    spec
}

#[test]
fn pull_unpacks_gzip_zstd_and_plain_layers_with_whiteouts_into_the_rootfs() {
    let registry = Registry::start();
    let (dir, mut layout) = layout();
    let spec = layered_image();
    let built = layout.add_image("1", &spec);
    push(dir.path(), "1", &registry, "team/app", None, false);

    let peapod = Peapod::new();
    // A loopback registry needs no insecure flag.
    let name = format!("{}/team/app:1", registry.host());
    peapod.pull(&name).ok();

    let store = peapod.store();
    let image = store.resolve(&name).expect("the pulled image");
    assert_eq!(image.name, name);
    assert_eq!(image.manifest, built.manifest.digest);
    assert_eq!(image.config, built.config.digest);
    let layers: Vec<_> = image
        .layers
        .iter()
        .map(|l| (l.digest.clone(), l.diff_id.clone()))
        .collect();
    let want: Vec<_> = built
        .layers
        .iter()
        .map(|l| l.digest.clone())
        .zip(built.diff_ids.clone())
        .collect();
    assert_eq!(layers, want);
    // The config as pushed, so Entrypoint/Cmd/Env/WorkingDir/User reach containers.
    let config: serde_json::Value =
        serde_json::from_slice(&store.content().read(&image.config).unwrap()).unwrap();
    assert_eq!(config["config"]["WorkingDir"], "/srv");
    assert_eq!(config["config"]["User"], "1000:1000");
    assert_consistent(&store);

    let rootfs = Rootfs::prepare(store, &image);
    let actual = tree::walk(&rootfs.path);
    tree::assert_same(&actual, &tree::expected(&spec.layers));
    // And a few facts spelled out, in case the oracle and the store agree on a mistake.
    let root = &rootfs.path;
    assert_eq!(
        fs::read_to_string(root.join("etc/motd")).unwrap(),
        "replaced in layer 3\n"
    );
    assert!(!root.join("etc/old.conf").exists());
    assert!(!root.join("deleted").exists());
    assert_eq!(
        fs::read_dir(root.join("opaque"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect::<Vec<_>>(),
        ["upper"]
    );
    let secret = fs::metadata(root.join("srv/secret")).unwrap();
    assert_eq!(
        (secret.mode() & 0o7777, secret.uid(), secret.gid()),
        (0o600, 1000, 100)
    );
    assert_eq!(
        fs::metadata(root.join("srv/tool")).unwrap().mode() & 0o7777,
        0o4755
    );
    assert_eq!(
        fs::read_link(root.join("srv/motd")).unwrap(),
        Path::new("../etc/motd")
    );
    assert!(fs::symlink_metadata(root.join("srv/dangling")).is_err());
    assert_eq!(
        fs::metadata(root.join("srv/data.bin")).unwrap().ino(),
        fs::metadata(root.join("srv/data.link")).unwrap().ino()
    );
    assert!(root.join("bin/busybox").is_file());
    assert_eq!(
        fs::read_link(root.join("bin/sh")).unwrap(),
        Path::new("busybox")
    );
}

#[test]
fn a_multi_platform_index_gives_the_host_or_the_asked_platform() {
    let registry = Registry::start();
    let (dir, mut layout) = layout();
    let amd64 = ImageSpec::new(vec![file_layer(Compression::Gzip, "arch", "amd64\n")]);
    let arm64 =
        ImageSpec::new(vec![file_layer(Compression::Gzip, "arch", "arm64\n")]).for_arch("arm64");
    let (index, built) = layout.add_multi_platform("1", &[amd64, arm64]);
    push(dir.path(), "1", &registry, "multi/arch", None, true);
    let name = format!("{}/multi/arch:1", registry.host());
    assert_eq!(
        std::env::consts::ARCH,
        "x86_64",
        "this test assumes an amd64 host"
    );

    let arch_of = |peapod: &Peapod, built: &BuiltImage| {
        let image = peapod.store().resolve(&name).unwrap();
        assert_eq!(image.digest, index.digest, "the repo digest is the index's");
        assert_eq!(image.manifest, built.manifest.digest);
        let layer = peapod
            .store()
            .layer_dir(&image.layers[0].diff_id)
            .expect("the layer");
        fs::read_to_string(layer.join("arch")).unwrap()
    };
    let host = Peapod::new();
    host.pull(&name).ok();
    assert_eq!(arch_of(&host, &built[0]), "amd64\n");

    let arm = Peapod::new();
    arm.run(&["pull", "--quiet", "--platform", "linux/arm64", &name])
        .ok();
    assert_eq!(arch_of(&arm, &built[1]), "arm64\n");

    let none = Peapod::new();
    let out = none.run(&["pull", "--quiet", "--platform", "linux/s390x", &name]);
    assert_fails_with(
        out.clone(),
        &["no manifest for platform", "no matching platform"],
    );
    assert!(
        out.stderr.contains("linux/s390x") && out.stderr.contains("linux/arm64"),
        "{out}"
    );
    assert!(none.store().images().unwrap().is_empty());
}

#[test]
fn an_htpasswd_registry_needs_credentials_from_flags_or_docker_config() {
    let registry = Registry::with_auth("tester", "pa55-w0rd");
    let creds = registry.credentials().unwrap().clone();
    let (dir, mut layout) = layout();
    layout.add_image(
        "1",
        &ImageSpec::new(vec![file_layer(Compression::Gzip, "secret", "s\n")]),
    );
    push(
        dir.path(),
        "1",
        &registry,
        "private/app",
        Some(&creds),
        false,
    );
    let name = format!("{}/private/app:1", registry.host());

    let anonymous = Peapod::new();
    assert_fails_with(
        anonymous.pull(&name),
        &["unauthorized", "authentication required"],
    );
    assert!(anonymous.store().images().unwrap().is_empty());

    let wrong = Peapod::new();
    assert_fails_with(
        wrong.run(&["pull", "--quiet", "--creds", "tester:nope", &name]),
        &["unauthorized"],
    );

    let flags = Peapod::new();
    flags
        .run(&["pull", "--quiet", "--creds", &creds.joined(), &name])
        .ok();
    assert!(flags.store().resolve(&name).is_ok());

    let mut config = Peapod::new();
    let config_dir = config.root().join("docker-config");
    fs::create_dir(&config_dir).unwrap();
    let auth = STANDARD.encode(creds.joined());
    let json = serde_json::json!({"auths": {registry.host(): {"auth": auth}}});
    fs::write(config_dir.join("config.json"), json.to_string()).unwrap();
    config.docker_config = Some(config_dir.clone());
    config.pull(&name).ok();
    assert!(config.store().resolve(&name).is_ok());

    let file = Peapod::new();
    let path = config_dir.join("config.json");
    file.run(&[
        "pull",
        "--quiet",
        "--docker-config",
        path.to_str().unwrap(),
        &name,
    ])
    .ok();
    assert!(file.store().resolve(&name).is_ok());
}

#[test]
fn a_token_registry_pulls_with_a_bearer_token_the_credentials_buy() {
    let registry = Registry::with_token_auth("token-user", "t0ken-pa55");
    let creds = registry.credentials().unwrap().clone();
    let tokens = registry.token_server().expect("a token server");
    let (dir, mut layout) = layout();
    let spec = ImageSpec::new(vec![
        file_layer(Compression::Gzip, "old", "old\n"),
        Layer::new(
            Compression::Zstd,
            vec![Entry::whiteout("old"), Entry::file("new", "new\n")],
        ),
    ]);
    let built = layout.add_image("1", &spec);
    push(
        dir.path(),
        "1",
        &registry,
        "secure/app",
        Some(&creds),
        false,
    );
    let pushed = tokens.requests();
    assert!(
        pushed.iter().any(|r| r.authenticated
            && r.scopes
                .iter()
                .any(|s| s.starts_with("repository:secure/app:") && s.contains("push"))),
        "skopeo pushed without a push token: {pushed:#?}"
    );
    let name = format!("{}/secure/app:1", registry.host());
    let host = registry.host();
    // The token requests a pull made, all of them.
    let asked_during = |pull: &dyn Fn() -> Output| -> (Output, Vec<TokenRequest>) {
        let before = tokens.requests().len();
        let out = pull();
        (out, tokens.requests()[before..].to_vec())
    };

    let anonymous = Peapod::new();
    let (out, asked) = asked_during(&|| anonymous.pull(&name));
    assert_fails_with(out.clone(), &["unauthorized"]);
    assert!(
        out.stderr.contains(&host),
        "the error names the registry: {out}"
    );
    assert!(anonymous.store().images().unwrap().is_empty());
    assert!(anonymous.store().content().list().unwrap().is_empty());
    // The client followed the challenge to the token server, and was refused there.
    assert!(
        !asked.is_empty()
            && asked
                .iter()
                .all(|r| r.username.is_none() && !r.authenticated && r.status == 401),
        "{asked:#?}"
    );

    let wrong = Peapod::new();
    let (out, asked) =
        asked_during(&|| wrong.run(&["pull", "--quiet", "--creds", "token-user:nope", &name]));
    assert_fails_with(out.clone(), &["unauthorized"]);
    assert!(
        out.stderr.contains(&host),
        "the error names the registry: {out}"
    );
    assert!(wrong.store().images().unwrap().is_empty());
    assert!(
        !asked.is_empty()
            && asked
                .iter()
                .all(|r| r.username.as_deref() == Some("token-user")
                    && !r.authenticated
                    && r.status == 401),
        "{asked:#?}"
    );

    let peapod = Peapod::new();
    let (out, asked) =
        asked_during(&|| peapod.run(&["pull", "--quiet", "--creds", &creds.joined(), &name]));
    out.ok();
    let pull_scope = vec!["repository:secure/app:pull".to_string()];
    assert!(
        asked.iter().any(|r| r.authenticated
            && r.status == 200
            && r.service.as_deref() == Some(token::SERVICE)
            && r.scopes == pull_scope),
        "no token was issued for {pull_scope:?}: {asked:#?}"
    );
    assert!(
        asked.iter().all(|r| r.authenticated),
        "a token request of the pull went without the credentials: {asked:#?}"
    );

    let store = peapod.store();
    let image = store.resolve(&name).expect("the pulled image");
    assert_eq!(image.manifest, built.manifest.digest);
    assert_eq!(image.config, built.config.digest);
    let diff_ids: Vec<_> = image.layers.iter().map(|l| l.diff_id.clone()).collect();
    assert_eq!(diff_ids, built.diff_ids);
    assert_consistent(&store);
    let rootfs = Rootfs::prepare(store, &image);
    tree::assert_same(&tree::walk(&rootfs.path), &tree::expected(&spec.layers));
    assert!(!rootfs.path.join("old").exists());
    assert_eq!(
        fs::read_to_string(rootfs.path.join("new")).unwrap(),
        "new\n"
    );
}

#[test]
fn a_corrupted_blob_is_refused_and_nothing_of_it_is_stored() {
    let registry = Registry::start();
    let (dir, mut layout) = layout();
    let spec = ImageSpec::new(vec![
        file_layer(Compression::Gzip, "good", "good\n"),
        Layer::new(
            Compression::Gzip,
            vec![Entry::file_with("bad", noise(7, 64 * 1024), 0o644, 0, 0)],
        ),
    ]);
    let built = layout.add_image("1", &spec);
    push(dir.path(), "1", &registry, "corrupt/app", None, false);
    let bad = &built.layers[1];
    registry.corrupt_blob(&bad.digest);
    let name = format!("{}/corrupt/app:1", registry.host());

    let peapod = Peapod::new();
    let out = peapod.pull(&name);
    assert_fails_with(out.clone(), &["digest mismatch"]);
    assert!(
        out.stderr.contains(&bad.digest),
        "the error names the blob: {out}"
    );
    let store = peapod.store();
    assert!(
        !store.content().has(&bad.digest),
        "the corrupted blob was stored"
    );
    assert!(
        store.layer_dir(&built.diff_ids[1]).is_none(),
        "a layer was unpacked from it"
    );
    assert!(store.images().unwrap().is_empty(), "an image was recorded");
    assert_consistent(&store);
    assert!(!lists(
        &peapod.run(&["images"]).ok().stdout,
        &format!("{}/corrupt/app", registry.host()),
        "1"
    ));
}

#[test]
fn a_pull_cut_midway_completes_on_retry_and_leaves_a_consistent_store() {
    let registry = Registry::start();
    let (dir, mut layout) = layout();
    let spec = ImageSpec::new(vec![
        file_layer(Compression::Zstd, "small", "small\n"),
        Layer::new(
            Compression::Gzip,
            vec![Entry::file_with("big", noise(3, 2 << 20), 0o644, 0, 0)],
        ),
    ]);
    let built = layout.add_image("1", &spec);
    push(dir.path(), "1", &registry, "flaky/app", None, false);
    // Manifests, config and the small layer are far below the cut.
    let cut_after = 256 * 1024;
    let peapod = Peapod::new();

    // One attempt only: the cut download fails the pull, and nothing half
    // written may remain (no record, no partial blob, no layer).
    let proxy = CuttingProxy::start(registry.port(), cut_after);
    let name = format!("{}/flaky/app:1", proxy.host());
    let out = peapod.run(&["pull", "--quiet", "--retries", "1", &name]);
    assert!(proxy.has_cut(), "the proxy never cut a download: {out}");
    out.failed();
    let store = peapod.store();
    assert_consistent(&store);
    assert!(store.images().unwrap().is_empty());
    assert!(!store.content().has(&built.layers[1].digest));
    assert!(store.layer_dir(&built.diff_ids[1]).is_none());
    drop(proxy);

    // With the default retries, a pull cut the same way completes by itself.
    let proxy = CuttingProxy::start(registry.port(), cut_after);
    let name = format!("{}/flaky/app:1", proxy.host());
    peapod.pull(&name).ok();
    assert!(proxy.has_cut(), "the proxy never cut the second pull");
    let store = peapod.store();
    let images = assert_consistent(&store);
    assert_eq!(images.len(), 1, "{images:?}");
    assert_eq!(images[0].manifest, built.manifest.digest);
    let big = store.layer_dir(&built.diff_ids[1]).unwrap().join("big");
    assert_eq!(fs::read(big).unwrap(), noise(3, 2 << 20));
}

#[test]
fn two_concurrent_pulls_of_one_image_both_succeed() {
    let registry = Registry::start();
    let (dir, mut layout) = layout();
    let spec = ImageSpec::new(vec![
        Layer::new(
            Compression::Gzip,
            vec![Entry::file_with("one", noise(11, 512 * 1024), 0o644, 0, 0)],
        ),
        Layer::new(
            Compression::Zstd,
            vec![Entry::file_with("two", noise(12, 512 * 1024), 0o644, 0, 0)],
        ),
        file_layer(Compression::Plain, "three", "3\n"),
    ]);
    let built = layout.add_image("1", &spec);
    push(dir.path(), "1", &registry, "race/app", None, false);
    let name = format!("{}/race/app:1", registry.host());

    let peapod = Peapod::new();
    // Two CLI processes at once, into one store.
    std::thread::scope(|s| {
        let pulls: Vec<_> = (0..2).map(|_| s.spawn(|| peapod.pull(&name))).collect();
        for pull in pulls {
            pull.join().unwrap().ok();
        }
    });
    let store = peapod.store();
    let images = assert_consistent(&store);
    assert_eq!(images.len(), 1, "one record for one name: {images:?}");
    assert_eq!(images[0].manifest, built.manifest.digest);
    let blobs: BTreeSet<String> = store.content().list().unwrap().into_iter().collect();
    for layer in &built.layers {
        assert!(blobs.contains(&layer.digest));
    }
    let rootfs = Rootfs::prepare(store, &images[0]);
    tree::assert_same(&tree::walk(&rootfs.path), &tree::expected(&spec.layers));
}

#[test]
fn images_rmi_and_prune_manage_what_is_stored() {
    let registry = Registry::start();
    let (dir, mut layout) = layout();
    let shared = file_layer(Compression::Gzip, "base", "shared base\n");
    let a = layout.add_image(
        "a",
        &ImageSpec::new(vec![
            shared.clone(),
            file_layer(Compression::Gzip, "a", "a\n"),
        ]),
    );
    let b = layout.add_image(
        "b",
        &ImageSpec::new(vec![shared, file_layer(Compression::Zstd, "b", "b\n")]),
    );
    push(dir.path(), "a", &registry, "mgmt/app", None, false);
    push(dir.path(), "b", &registry, "mgmt/app", None, false);
    let repo = format!("{}/mgmt/app", registry.host());

    let peapod = Peapod::new();
    peapod.pull(&format!("{repo}:a")).ok();
    peapod.pull(&format!("{repo}:b")).ok();
    let listed = peapod.run(&["images"]).ok().stdout;
    assert!(
        lists(&listed, &repo, "a") && lists(&listed, &repo, "b"),
        "{listed}"
    );

    peapod.run(&["rmi", &format!("{repo}:a")]).ok();
    let listed = peapod.run(&["images"]).ok().stdout;
    assert!(
        !lists(&listed, &repo, "a") && lists(&listed, &repo, "b"),
        "{listed}"
    );
    peapod.run(&["image", "prune"]).ok();
    let store = peapod.store();
    assert_consistent(&store);
    // b and its layers, the shared one included, survive; a's own layer goes.
    assert!(store.layer_dir(&b.diff_ids[0]).is_some() && store.layer_dir(&b.diff_ids[1]).is_some());
    assert!(
        store.layer_dir(&a.diff_ids[1]).is_none(),
        "a's own layer outlived rmi + prune"
    );
    assert!(!store.content().has(&a.layers[1].digest));
    assert!(!store.content().has(&a.manifest.digest));

    assert_fails_with(
        peapod.run(&["rmi", &format!("{repo}:nope")]),
        &["not found"],
    );

    peapod.run(&["rmi", &format!("{repo}:b")]).ok();
    peapod.run(&["image", "prune"]).ok();
    let store = peapod.store();
    assert!(store.images().unwrap().is_empty());
    assert!(
        store.content().list().unwrap().is_empty(),
        "blobs left after removing every image"
    );
    for id in a.diff_ids.iter().chain(&b.diff_ids) {
        assert!(store.layer_dir(id).is_none(), "layer {id} left");
    }
    assert!(peapod
        .run(&["images"])
        .ok()
        .stdout
        .lines()
        .all(|l| !l.contains(&repo)));
}

#[test]
fn import_loads_docker_save_tarballs_and_oci_archives() {
    let files = tempfile::tempdir().unwrap();
    let spec = ImageSpec::new(vec![
        busybox_layer(Compression::Gzip),
        Layer::new(
            Compression::Plain,
            vec![
                Entry::dir("etc"),
                Entry::whiteout("etc/group"),
                Entry::file("etc/imported", "yes\n"),
            ],
        ),
    ]);
    let saved = files.path().join("saved.tar");
    docker_save(&saved, &[(vec!["example.test/saved/app:1".into()], &spec)]);
    let (dir, mut layout) = layout();
    let other = ImageSpec::new(vec![file_layer(
        Compression::Zstd,
        "oci",
        "from an OCI archive\n",
    )]);
    let built = layout.add_image("example.test/oci/app:2", &other);
    let oci = files.path().join("oci.tar");
    layout.archive(&oci);
    drop(dir);

    let peapod = Peapod::new();
    peapod
        .run(&["image", "import", saved.to_str().unwrap()])
        .ok();
    peapod.run(&["image", "import", oci.to_str().unwrap()]).ok();
    let listed = peapod.run(&["images"]).ok().stdout;
    assert!(lists(&listed, "example.test/saved/app", "1"), "{listed}");
    assert!(lists(&listed, "example.test/oci/app", "2"), "{listed}");

    let store = peapod.store();
    assert_consistent(&store);
    let image = store.resolve("example.test/saved/app:1").unwrap();
    let rootfs = Rootfs::prepare(store.clone(), &image);
    tree::assert_same(&tree::walk(&rootfs.path), &tree::expected(&spec.layers));
    drop(rootfs);
    let image = store.resolve("example.test/oci/app:2").unwrap();
    assert_eq!(image.manifest, built.manifest.digest);
    let rootfs = Rootfs::prepare(store, &image);
    tree::assert_same(&tree::walk(&rootfs.path), &tree::expected(&other.layers));

    let junk = files.path().join("junk.tar");
    fs::write(&junk, "not an archive").unwrap();
    let out = peapod.run(&["image", "import", junk.to_str().unwrap()]);
    assert_fails_with(out.clone(), &["junk.tar"]);
}

#[test]
fn unknown_names_and_unreachable_registries_fail_clearly() {
    let mut registry = Registry::start();
    let (dir, mut layout) = layout();
    layout.add_image(
        "1",
        &ImageSpec::new(vec![file_layer(Compression::Gzip, "x", "x\n")]),
    );
    push(dir.path(), "1", &registry, "known/app", None, false);
    let peapod = Peapod::new();

    assert_fails_with(
        peapod.pull(&format!("{}/known/app:2", registry.host())),
        &["manifest unknown"],
    );
    assert_fails_with(
        peapod.pull(&format!("{}/unknown/app:1", registry.host())),
        // docker-registry answers MANIFEST_UNKNOWN for unknown repositories too.
        &["manifest unknown"],
    );
    let host = registry.host();
    registry.stop();
    let out = peapod.pull(&format!("{host}/known/app:1"));
    assert_fails_with(out.clone(), &["unreachable", "connection refused"]);
    assert!(
        out.stderr.contains(&host),
        "the error names the registry: {out}"
    );
    assert!(peapod.store().images().unwrap().is_empty());
}

#[test]
fn harness_pushes_zstd_and_plain_layers_unchanged() {
    let registry = Registry::start();
    let (dir, mut layout) = layout();
    let spec = ImageSpec::new(vec![
        file_layer(Compression::Gzip, "g", "gzip"),
        file_layer(Compression::Zstd, "z", "zstd"),
        file_layer(Compression::Plain, "p", "plain"),
    ]);
    let image = layout.add_image("1", &spec);
    push(dir.path(), "1", &registry, "team/app", None, false);
    for layer in &image.layers {
        let status = registry
            .get_status(&format!("/v2/team/app/blobs/{}", layer.digest))
            .unwrap();
        assert_eq!(
            status, 200,
            "{layer:?} not in the registry under its digest"
        );
        let stored = fs::read(registry.blob_path(&layer.digest)).unwrap();
        assert_eq!(digest(&stored), layer.digest);
    }
    let secured = Registry::with_auth("u", "p");
    assert_eq!(secured.get_status("/v2/").unwrap(), 401);
}

#[test]
fn harness_token_registry_takes_only_tokens_its_server_signs_for_the_repository() {
    let registry = Registry::with_token_auth("u", "p");
    let tokens = registry.token_server().unwrap();
    assert_eq!(registry.get_status("/v2/").unwrap(), 401);
    let token = tokens.mint("u", &["repository:team/app:pull"]);
    assert_eq!(
        registry.get_status_with_token("/v2/", &token).unwrap(),
        200,
        "{}",
        registry.log()
    );
    // Authorized, and the repository does not exist yet.
    let tags = "/v2/team/app/tags/list";
    assert_eq!(registry.get_status_with_token(tags, &token).unwrap(), 404);
    let other = "/v2/other/app/tags/list";
    assert_eq!(registry.get_status_with_token(other, &token).unwrap(), 401);
    // One signature byte changed (not the last character, whose low bits
    // are padding a decoder may ignore).
    let at = token.len() - 10;
    let flipped = if &token[at..at + 1] == "A" { "B" } else { "A" };
    let forged = format!("{}{flipped}{}", &token[..at], &token[at + 1..]);
    assert_eq!(registry.get_status_with_token(tags, &forged).unwrap(), 401);
}
