//! Images: pulls from a real registry, imports, and the store's CLI.

use peapod_tests::oci::{busybox_layer, push, Compression, Entry, ImageSpec, Layer, OciLayout};
use peapod_tests::Registry;

#[test]
fn harness_pushes_layers_unchanged() {
    let t = std::time::Instant::now();
    let registry = Registry::start();
    eprintln!("reg {:?}", t.elapsed());
    let dir = tempfile::tempdir().unwrap();
    let mut layout = OciLayout::create(dir.path());
    let spec = ImageSpec::new(vec![
        busybox_layer(Compression::Gzip),
        Layer::new(Compression::Zstd, vec![Entry::file("z", "zstd")]),
        Layer::new(Compression::Plain, vec![Entry::file("p", "plain")]),
    ]);
    eprintln!("spec {:?}", t.elapsed());
    let image = layout.add_image("1", &spec);
    eprintln!("built {:?}", t.elapsed());
    push(layout.dir(), "1", &registry, "team/app", None, false);
    eprintln!("pushed {:?}", t.elapsed());
    for layer in &image.layers {
        let status = registry
            .get_status(&format!("/v2/team/app/blobs/{}", layer.digest))
            .unwrap();
        assert_eq!(status, 200, "{layer:?}");
        assert!(registry.blob_path(&layer.digest).is_file());
    }
}
