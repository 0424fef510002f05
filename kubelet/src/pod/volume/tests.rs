//! The volume manager without root: downwardAPI and configMap volumes on disk, set up
//! once and refreshed when the pod's labels or the configMap change.

use std::collections::BTreeMap;
use std::sync::Mutex;

use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, DownwardAPIVolumeFile, DownwardAPIVolumeSource,
    ObjectFieldSelector, PodSpec, Secret,
};

use super::*;

/// configMaps by name, changeable between calls.
#[derive(Default)]
struct Fake(Mutex<BTreeMap<String, BTreeMap<String, String>>>);

impl ObjectSource for Fake {
    fn config_map(&self, _: &str, name: &str) -> Result<Option<ConfigMap>, String> {
        Ok(self.0.lock().unwrap().get(name).map(|data| ConfigMap {
            data: Some(data.clone()),
            ..Default::default()
        }))
    }

    fn secret(&self, _: &str, _: &str) -> Result<Option<Secret>, String> {
        Ok(None)
    }
}

fn node() -> Allocatable {
    Allocatable {
        cpu_millis: 1000,
        memory: 1 << 30,
        ephemeral_storage: 1 << 30,
    }
}

fn pod(labels: &[(&str, &str)], config_map: &str, optional: bool) -> Pod {
    let mut pod = Pod::default();
    pod.metadata.uid = Some("uid-1".into());
    pod.metadata.namespace = Some("default".into());
    pod.metadata.labels = Some(
        labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    );
    let field = |path: &str, field: &str| DownwardAPIVolumeFile {
        path: path.into(),
        field_ref: Some(ObjectFieldSelector {
            field_path: field.into(),
            api_version: None,
        }),
        ..Default::default()
    };
    pod.spec = Some(PodSpec {
        volumes: Some(vec![
            Volume {
                name: "info".into(),
                downward_api: Some(DownwardAPIVolumeSource {
                    items: Some(vec![
                        field("labels", "metadata.labels"),
                        field("app", "metadata.labels['app']"),
                    ]),
                    ..Default::default()
                }),
                ..Default::default()
            },
            Volume {
                name: "cfg".into(),
                config_map: Some(ConfigMapVolumeSource {
                    name: config_map.into(),
                    optional: Some(optional),
                    ..Default::default()
                }),
                ..Default::default()
            },
        ]),
        ..Default::default()
    });
    pod
}

#[test]
fn refresh_follows_labels_and_config_map_changes() {
    let tmp = tempfile::tempdir().unwrap();
    let objects = Arc::new(Fake::default());
    objects.0.lock().unwrap().insert(
        "settings".into(),
        BTreeMap::from([("mode".to_string(), "fast".to_string())]),
    );
    let volumes = Volumes::new(objects.clone(), node());
    let first = pod(&[("app", "web")], "settings", false);
    volumes.set_up(&first, tmp.path()).unwrap();
    let info = tmp.path().join("kubernetes.io~downward-api/info");
    let cfg = tmp.path().join("kubernetes.io~configmap/cfg");
    let read = |p: &Path| fs::read_to_string(p).unwrap();
    assert_eq!(read(&info.join("labels")), "app=\"web\"");
    assert_eq!(read(&info.join("app")), "web");
    assert_eq!(read(&cfg.join("mode")), "fast");
    let before = fs::read_link(info.join(atomic::DATA_DIR)).unwrap();

    let relabelled = pod(&[("app", "api"), ("v", "2")], "settings", false);
    volumes.refresh(&relabelled, tmp.path()).unwrap();
    assert_eq!(read(&info.join("labels")), "app=\"api\"\nv=\"2\"");
    assert_eq!(read(&info.join("app")), "api");
    assert_ne!(fs::read_link(info.join(atomic::DATA_DIR)).unwrap(), before);

    objects.0.lock().unwrap().insert(
        "settings".into(),
        BTreeMap::from([("level".to_string(), "3".to_string())]),
    );
    volumes.refresh(&relabelled, tmp.path()).unwrap();
    assert_eq!(read(&cfg.join("level")), "3");
    assert!(!cfg.join("mode").exists(), "a removed key's file goes");
}

#[test]
fn a_restarted_kubelet_refreshes_the_volumes_it_adopted_but_not_unset_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let objects = Arc::new(Fake::default());
    let data = |v: &str| BTreeMap::from([("mode".to_string(), v.to_string())]);
    objects
        .0
        .lock()
        .unwrap()
        .insert("settings".into(), data("fast"));
    let never_set_up = tmp.path().join("other");
    let adopted = pod(&[("app", "web")], "settings", false);
    Volumes::new(objects.clone(), node())
        .set_up(&adopted, tmp.path())
        .unwrap();

    objects
        .0
        .lock()
        .unwrap()
        .insert("settings".into(), data("slow"));
    let restarted = Volumes::new(objects.clone(), node());
    restarted.refresh(&adopted, tmp.path()).unwrap();
    let cfg = tmp.path().join("kubernetes.io~configmap/cfg/mode");
    assert_eq!(fs::read_to_string(cfg).unwrap(), "slow");
    restarted.refresh(&adopted, &never_set_up).unwrap();
    assert!(!never_set_up.exists(), "a pod not set up yet is left alone");
}

#[test]
fn missing_config_maps_fail_unless_optional() {
    let tmp = tempfile::tempdir().unwrap();
    let volumes = Volumes::new(Arc::new(NoApiServer), node());
    let err = volumes
        .set_up(&pod(&[], "absent", false), tmp.path())
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "MountVolume.SetUp failed for volume \"cfg\" : configmap \"absent\" not found"
    );
    volumes
        .set_up(&pod(&[], "absent", true), tmp.path())
        .unwrap();
    let cfg = tmp.path().join("kubernetes.io~configmap/cfg");
    let visible: Vec<_> = fs::read_dir(&cfg)
        .unwrap()
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().starts_with(".."))
        .collect();
    assert!(visible.is_empty(), "an optional missing configMap is empty");
}

#[test]
fn empty_dirs_over_their_size_limit_are_reported() {
    use k8s_openapi::api::core::v1::EmptyDirVolumeSource;
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    let tmp = tempfile::tempdir().unwrap();
    let mut pod = Pod::default();
    pod.metadata.uid = Some("uid-2".into());
    pod.spec = Some(PodSpec {
        volumes: Some(vec![Volume {
            name: "scratch".into(),
            empty_dir: Some(EmptyDirVolumeSource {
                size_limit: Some(Quantity("1Mi".into())),
                ..Default::default()
            }),
            ..Default::default()
        }]),
        ..Default::default()
    });
    let volumes = Volumes::new(Arc::new(NoApiServer), node());
    volumes.set_up(&pod, tmp.path()).unwrap();
    assert!(volumes.over_limit(&pod, tmp.path()).is_empty());
    let dir = tmp.path().join("kubernetes.io~empty-dir/scratch");
    fs::write(dir.join("big"), vec![1u8; 2 << 20]).unwrap();
    assert_eq!(
        volumes.over_limit(&pod, tmp.path()),
        vec!["Usage of EmptyDir volume \"scratch\" exceeds the limit \"1Mi\".".to_string()]
    );
}
