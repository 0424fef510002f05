//! Tests of [`super`]: a peer speaking frames over an in-memory connection.

use std::time::Duration;

use tokio::io::AsyncWriteExt;

use super::super::frame::Setting;
use super::super::test_peer::Peer;
use super::*;

#[tokio::test]
async fn streams_are_accepted_and_carry_data_both_ways() {
    let (mut peer, mut session) = Peer::connect();
    peer.open(1, "stdout").await;
    let mut stream = session.accept().await.unwrap();
    assert_eq!(stream.header("STREAMTYPE"), Some("stdout"));
    assert!(matches!(
        peer.next().await,
        Some(Frame::SynReply { stream: 1, .. })
    ));

    peer.send(Frame::Data {
        stream: 1,
        flags: FLAG_FIN,
        data: b"hi".to_vec(),
    })
    .await;
    assert_eq!(stream.reader.read().await.as_deref(), Some(&b"hi"[..]));
    assert_eq!(stream.reader.read().await, None, "FIN ends the reader");

    stream.writer.write(b"yo").await.unwrap();
    stream.writer.close().await.unwrap();
    assert_eq!(
        peer.next().await,
        Some(Frame::Data {
            stream: 1,
            flags: 0,
            data: b"yo".to_vec()
        })
    );
    assert_eq!(
        peer.next().await,
        Some(Frame::Data {
            stream: 1,
            flags: FLAG_FIN,
            data: vec![]
        })
    );
    assert!(stream.writer.write(b"late").await.is_err());

    peer.send(Frame::Ping { id: 5 }).await;
    assert_eq!(peer.next().await, Some(Frame::Ping { id: 5 }));
    // A stream id that goes backwards is a protocol error for that stream.
    peer.open(1, "stdin").await;
    assert!(matches!(
        peer.next().await,
        Some(Frame::RstStream {
            stream: 1,
            status: PROTOCOL_ERROR
        })
    ));

    session.close().await;
    assert!(matches!(
        peer.next().await,
        Some(Frame::GoAway { last_good: 1, .. })
    ));
    assert_eq!(peer.next().await, None);
}

#[tokio::test]
async fn a_peer_that_keeps_windows_is_held_to_them() {
    let (mut peer, mut session) = Peer::connect();
    peer.send(Frame::Settings {
        flags: 0,
        entries: vec![Setting {
            flags: 0,
            id: SETTINGS_INITIAL_WINDOW_SIZE,
            value: 10,
        }],
    })
    .await;
    peer.open(1, "stdout").await;
    let stream = session.accept().await.unwrap();
    let writer = stream.writer.clone();
    let sent = tokio::spawn(async move { writer.write(&[7; 25]).await });
    assert_eq!(peer.data(10).await.len(), 10);
    assert_eq!(peer.next().await, None, "the window is spent");
    peer.send(Frame::WindowUpdate {
        stream: 1,
        delta: 10,
    })
    .await;
    assert_eq!(peer.data(10).await.len(), 10);
    assert_eq!(peer.next().await, None);
    peer.send(Frame::WindowUpdate {
        stream: 1,
        delta: 100,
    })
    .await;
    assert_eq!(peer.data(5).await.len(), 5);
    sent.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_peer_without_window_updates_is_not_held() {
    // Kubernetes' SPDY library never sends WINDOW_UPDATE.
    let (mut peer, mut session) = Peer::connect();
    peer.open(1, "stdout").await;
    let stream = session.accept().await.unwrap();
    let writer = stream.writer.clone();
    let sent = tokio::spawn(async move { writer.write(&vec![1; 200_000]).await });
    assert_eq!(peer.data(200_000).await.len(), 200_000);
    sent.await.unwrap().unwrap();
}

#[tokio::test]
async fn reading_grants_the_window_back() {
    let (mut peer, mut session) = Peer::connect();
    peer.open(1, "stdin").await;
    let mut stream = session.accept().await.unwrap();
    for _ in 0..4 {
        peer.send(Frame::Data {
            stream: 1,
            flags: 0,
            data: vec![0; 10_000],
        })
        .await;
    }
    let mut updates = Vec::new();
    for _ in 0..4 {
        stream.reader.read().await.unwrap();
    }
    while let Some(frame) = peer.next().await {
        if let Frame::WindowUpdate { stream, delta } = frame {
            updates.push((stream, delta));
        }
    }
    // Half a window read: both the session's and the stream's are granted.
    assert_eq!(updates, [(0, 40_000), (1, 40_000)]);
}

#[tokio::test]
async fn a_broken_frame_ends_the_session_with_goaway() {
    let (mut peer, mut session) = Peer::connect();
    peer.write
        .write_all(&[0x80, 2, 0, 6, 0, 0, 0, 4, 0, 0, 0, 1])
        .await
        .unwrap();
    assert!(matches!(
        peer.next().await,
        Some(Frame::GoAway {
            status: GOAWAY_PROTOCOL_ERROR,
            ..
        })
    ));
    assert!(session.accept().await.is_none());
    tokio::time::timeout(Duration::from_secs(1), session.closed())
        .await
        .unwrap();
}
