//! The manifests folder source against a real folder: inotify, debounce, events.

use std::path::Path;
use std::time::Duration;

use kubelet::source::{full_name, watch_folder, FolderConfig, SourceEvent};
use tokio::sync::mpsc;
use tokio::time::timeout;

fn pod_yaml(name: &str, port: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  containers:\n  - name: web\n    image: busybox:1.36\n    ports:\n    - containerPort: {port}\n"
    )
}

/// Write through a dotfile and a rename, as an atomic writer (and the API) does.
fn write(dir: &Path, name: &str, content: &str) {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, content).unwrap();
    std::fs::rename(&tmp, dir.join(name)).unwrap();
}

async fn next(rx: &mut mpsc::Receiver<SourceEvent>) -> SourceEvent {
    timeout(Duration::from_secs(2), rx.recv())
        .await
        .expect("no event within 2 s")
        .expect("source ended")
}

fn describe(event: &SourceEvent) -> String {
    match event {
        SourceEvent::Add(p) => format!("add {}", full_name(p)),
        SourceEvent::Update(p) => format!("update {}", full_name(p)),
        SourceEvent::Remove(p) => format!("remove {}", full_name(p)),
        SourceEvent::Error { file, .. } => {
            format!("error {}", file.file_name().unwrap().to_string_lossy())
        }
        SourceEvent::Synced => "synced".into(),
    }
}

fn uid(event: &SourceEvent) -> String {
    match event {
        SourceEvent::Add(p) | SourceEvent::Update(p) | SourceEvent::Remove(p) => {
            p.metadata.uid.clone().unwrap()
        }
        other => panic!("expected a pod event, got {other:?}"),
    }
}

#[tokio::test]
async fn the_folder_source_follows_the_files() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.yaml", &pod_yaml("a", "8080"));
    let mut config = FolderConfig::new(dir.path(), "node1");
    config.debounce = Duration::from_millis(20);
    let (tx, mut rx) = mpsc::channel(16);
    let source = tokio::spawn(watch_folder(config, tx));

    // Start: the existing file is announced, then the end of the first listing.
    let added = next(&mut rx).await;
    assert_eq!(describe(&added), "add default/a-node1");
    assert_eq!(describe(&next(&mut rx).await), "synced");

    // A new file: its pod appears.
    write(dir.path(), "b.yaml", &pod_yaml("b", "8080"));
    assert_eq!(describe(&next(&mut rx).await), "add default/b-node1");

    // A changed file: an update with a new UID and config.hash.
    write(dir.path(), "a.yaml", &pod_yaml("a", "9090"));
    let updated = next(&mut rx).await;
    assert_eq!(describe(&updated), "update default/a-node1");
    assert_ne!(uid(&updated), uid(&added));
    if let SourceEvent::Update(pod) = &updated {
        assert_eq!(
            pod.metadata.annotations.as_ref().unwrap()["kubernetes.io/config.hash"],
            uid(&updated)
        );
    }

    // A broken file next to good ones: an error naming file and field, nothing else.
    write(dir.path(), "c.yaml", &pod_yaml("c", "http"));
    match next(&mut rx).await {
        SourceEvent::Error { file, message } => {
            assert_eq!(file, dir.path().join("c.yaml"));
            assert!(
                message.ends_with("c.yaml: document 1: spec.containers[0].ports[0].containerPort: invalid type: string \"http\", expected i32"),
                "{message}"
            );
        }
        other => panic!("expected an error, got {}", describe(&other)),
    }
    // A good file turned bad keeps its pod: an error, and no removal.
    write(dir.path(), "b.yaml", "apiVersion: v1\nkind: Deployment\n");
    assert_eq!(describe(&next(&mut rx).await), "error b.yaml");

    // A deleted file: its pod is removed. Editor leftovers are ignored.
    std::fs::write(dir.path().join("a.yaml~"), pod_yaml("stale", "1")).unwrap();
    std::fs::remove_file(dir.path().join("a.yaml")).unwrap();
    let removed = next(&mut rx).await;
    assert_eq!(describe(&removed), "remove default/a-node1");
    assert_eq!(uid(&removed), uid(&updated));
    // Nothing more: the good pod b and the broken c produce no further events.
    assert!(
        timeout(Duration::from_millis(200), rx.recv())
            .await
            .is_err(),
        "unexpected extra event"
    );

    drop(rx);
    timeout(Duration::from_secs(1), source)
        .await
        .expect("source stops once the receiver is gone")
        .unwrap();
}

#[tokio::test]
async fn a_burst_of_writes_is_one_update() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = FolderConfig::new(dir.path(), "node1");
    config.debounce = Duration::from_millis(150);
    let (tx, mut rx) = mpsc::channel(16);
    let source = tokio::spawn(watch_folder(config, tx));
    assert_eq!(describe(&next(&mut rx).await), "synced");
    // Written in pieces, as an editor without atomic saves does: the halves
    // in between are not valid, and must not be reported.
    let path = dir.path().join("w.yaml");
    let text = pod_yaml("w", "8080");
    let (head, tail) = text.split_at(text.len() / 2);
    std::fs::write(&path, head).unwrap();
    tokio::time::sleep(Duration::from_millis(15)).await;
    std::fs::write(&path, &text[..text.len() - 3]).unwrap();
    tokio::time::sleep(Duration::from_millis(15)).await;
    std::fs::write(&path, format!("{head}{tail}")).unwrap();
    assert_eq!(describe(&next(&mut rx).await), "add default/w-node1");
    assert!(
        timeout(Duration::from_millis(200), rx.recv())
            .await
            .is_err(),
        "unexpected extra event"
    );
    source.abort();
}

#[tokio::test]
async fn a_missing_folder_is_reported_and_picked_up_later() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("manifests");
    let mut config = FolderConfig::new(&dir, "node1");
    config.resync_period = Duration::from_millis(100);
    let (tx, mut rx) = mpsc::channel(16);
    let source = tokio::spawn(watch_folder(config, tx));
    match next(&mut rx).await {
        SourceEvent::Error { file, message } => {
            assert_eq!(file, dir);
            assert!(
                message.ends_with("manifests: does not exist: no static pods until it is created"),
                "{message}"
            );
        }
        other => panic!("expected an error, got {}", describe(&other)),
    }
    assert_eq!(describe(&next(&mut rx).await), "synced");
    std::fs::create_dir(&dir).unwrap();
    write(&dir, "a.yaml", &pod_yaml("a", "8080"));
    assert_eq!(describe(&next(&mut rx).await), "add default/a-node1");
    source.abort();
}

#[tokio::test]
async fn no_synced_until_the_folder_could_be_listed() {
    // A regular file where the folder should be: listing fails (not "missing"),
    // so the source must not claim it has seen every pod.
    let parent = tempfile::tempdir().unwrap();
    let not_a_dir = parent.path().join("manifests");
    std::fs::write(&not_a_dir, "").unwrap();
    let mut config = FolderConfig::new(&not_a_dir, "node1");
    config.resync_period = Duration::from_millis(50);
    let (tx, mut rx) = mpsc::channel(16);
    let source = tokio::spawn(watch_folder(config, tx));
    match next(&mut rx).await {
        SourceEvent::Error { message, .. } => assert!(message.contains("cannot list"), "{message}"),
        other => panic!("expected an error, got {}", describe(&other)),
    }
    // Several rescans pass: the same error is not repeated, and no Synced.
    assert!(
        timeout(Duration::from_millis(300), rx.recv())
            .await
            .is_err(),
        "unexpected event"
    );
    source.abort();
}
