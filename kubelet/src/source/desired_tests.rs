//! The bookkeeping rules of a manifests folder, without a file system.

use std::path::PathBuf;

use chrono::{TimeZone, Utc};

use super::desired::{Desired, Listed};
use super::{full_name, identity, SourceEvent};

fn pod_yaml(name: &str, image: &str) -> Vec<u8> {
    format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  containers:\n  - {{name: c, image: {image}}}\n").into_bytes()
}

fn listed(file: &str, content: Vec<u8>) -> Listed {
    Listed {
        path: PathBuf::from(file),
        content: Ok(content),
    }
}

fn kinds(events: &[SourceEvent]) -> Vec<String> {
    events
        .iter()
        .map(|e| match e {
            SourceEvent::Add(p) => format!("add {}", full_name(p)),
            SourceEvent::Update(p) => format!("update {}", full_name(p)),
            SourceEvent::Remove(p) => format!("remove {}", full_name(p)),
            SourceEvent::Error { file, .. } => format!("error {}", file.display()),
            SourceEvent::Synced => "synced".into(),
        })
        .collect()
}

fn at(second: u32) -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, second).unwrap()
}

#[test]
fn unchanged_listings_announce_nothing() {
    let mut d = Desired::new("n");
    let first = d.apply(vec![listed("m/a.yaml", pod_yaml("a", "x:1"))], at(0));
    assert_eq!(kinds(&first), ["add default/a-n"]);
    let seen = d.pods()["default/a-n"]
        .metadata
        .annotations
        .as_ref()
        .unwrap()[identity::CONFIG_SEEN]
        .clone();
    assert_eq!(seen, "2026-01-01T00:00:00.000000000Z");
    assert!(d
        .apply(vec![listed("m/a.yaml", pod_yaml("a", "x:1"))], at(1))
        .is_empty());
}

#[test]
fn a_changed_file_updates_with_a_new_uid_and_a_deleted_one_removes() {
    let mut d = Desired::new("n");
    d.apply(vec![listed("m/a.yaml", pod_yaml("a", "x:1"))], at(0));
    let old = identity::uid(&d.pods()["default/a-n"]).to_owned();
    let events = d.apply(vec![listed("m/a.yaml", pod_yaml("a", "x:2"))], at(1));
    assert_eq!(kinds(&events), ["update default/a-n"]);
    assert_ne!(identity::uid(&d.pods()["default/a-n"]), old);
    assert_eq!(kinds(&d.apply(vec![], at(2))), ["remove default/a-n"]);
}

#[test]
fn a_file_turned_bad_keeps_its_pods_and_reports_once() {
    let mut d = Desired::new("n");
    d.apply(vec![listed("m/a.yaml", pod_yaml("a", "x:1"))], at(0));
    let bad = || {
        listed("m/a.yaml", b"apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec: {containers: [{name: c, image: x, ports: [{containerPort: web}]}]}\n".to_vec())
    };
    let events = d.apply(vec![bad()], at(1));
    assert_eq!(kinds(&events), ["error m/a.yaml"]);
    assert!(
        d.pods().contains_key("default/a-n"),
        "the old pod keeps running"
    );
    assert!(
        d.apply(vec![bad()], at(2)).is_empty(),
        "the same error is reported once"
    );
}

#[test]
fn a_later_file_may_not_redefine_a_pod() {
    let mut d = Desired::new("n");
    let events = d.apply(
        vec![
            listed("m/b.yaml", pod_yaml("a", "x:2")),
            listed("m/a.yaml", pod_yaml("a", "x:1")),
        ],
        at(0),
    );
    assert_eq!(kinds(&events), ["error m/b.yaml", "add default/a-n"]);
    match &events[0] {
        SourceEvent::Error { message, .. } => {
            assert_eq!(
                message,
                "m/b.yaml: pod default/a-n is already defined in m/a.yaml"
            )
        }
        other => panic!("unexpected {other:?}"),
    }
    // Once the first file is gone, the second one's pod takes over.
    let events = d.apply(vec![listed("m/b.yaml", pod_yaml("a", "x:2"))], at(1));
    assert_eq!(kinds(&events), ["update default/a-n"]);
}

#[test]
fn an_unreadable_file_is_an_error_naming_it() {
    let mut d = Desired::new("n");
    let events = d.apply(
        vec![Listed {
            path: PathBuf::from("m/a.yaml"),
            content: Err("cannot read: Permission denied".into()),
        }],
        at(0),
    );
    assert_eq!(kinds(&events), ["error m/a.yaml"]);
}
