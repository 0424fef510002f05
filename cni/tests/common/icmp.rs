//! An ICMP echo prober that pings many targets at once from inside one network namespace.
//!
//! One raw socket per prober sends an echo request to every target, collects the
//! replies until a deadline, and re-sends to the silent ones for a few rounds: the
//! first packet to a new neighbour can be lost while ARP resolves, and one thread
//! per pod is far cheaper than a `ping` process per (pod, target) pair. Replies are
//! matched on source address, ICMP id (one per prober) and sequence (the
//! target's index), so stray ICMP seen by the raw socket is ignored.

use std::collections::BTreeSet;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU16, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sched::{setns, CloneFlags};
use nix::sys::socket::{self, sockopt, AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType};
use nix::sys::time::TimeVal;

/// How long each round waits for replies before re-sending to the silent targets.
const ROUND_WAITS: [Duration; 4] = [
    Duration::from_millis(500),
    Duration::from_millis(1000),
    Duration::from_millis(1500),
    Duration::from_millis(2000),
];

/// ICMP message types (RFC 792).
const ECHO_REPLY: u8 = 0;
const ECHO_REQUEST: u8 = 8;

/// Distinct ICMP ids for the probers of one test process.
static NEXT_ID: AtomicU16 = AtomicU16::new(1);

/// Starts a dedicated thread that enters the network namespace at `netns` and
/// pings every target; the thread returns the targets that never answered.
///
/// A thread of its own because `setns` changes only the calling thread, which
/// must not be one a pool hands to other work afterwards.
pub fn spawn(netns: PathBuf, targets: Vec<Ipv4Addr>) -> JoinHandle<io::Result<Vec<Ipv4Addr>>> {
    let id = NEXT_ID
        .fetch_add(1, Ordering::Relaxed)
        .wrapping_add(std::process::id() as u16);
    std::thread::spawn(move || {
        let ns = std::fs::File::open(&netns)?;
        setns(ns, CloneFlags::CLONE_NEWNET)?;
        silent_targets(&targets, id)
    })
}

/// Pings `targets` from the current thread's network namespace and returns
/// the ones that stayed silent through every round.
fn silent_targets(targets: &[Ipv4Addr], id: u16) -> io::Result<Vec<Ipv4Addr>> {
    assert!(targets.len() <= usize::from(u16::MAX), "sequence is a u16");
    let sock = socket::socket(
        AddressFamily::Inet,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::Icmp,
    )?;
    // The raw socket also gets a copy of every echo request other pods send
    // us; a roomy buffer keeps a burst of them from crowding out our replies.
    socket::setsockopt(&sock, sockopt::RcvBufForce, &(1 << 20))?;
    socket::setsockopt(&sock, sockopt::ReceiveTimeout, &TimeVal::new(0, 20_000))?;
    let mut missing: BTreeSet<u16> = (0..targets.len() as u16).collect();
    for wait in ROUND_WAITS {
        for &seq in &missing {
            // A failed send (say, EHOSTUNREACH after ARP gave up) leaves the
            // target missing, to be retried next round and reported if it stays so.
            let _ = send_to(&sock, &echo_request(id, seq), targets[usize::from(seq)]);
        }
        collect_replies(&sock, targets, id, &mut missing, Instant::now() + wait)?;
        if missing.is_empty() {
            break;
        }
    }
    Ok(missing
        .into_iter()
        .map(|seq| targets[usize::from(seq)])
        .collect())
}

/// Sends one datagram to `to` (nix's socket addresses need its `net` feature,
/// which the workspace does not enable).
fn send_to(sock: &OwnedFd, packet: &[u8], to: Ipv4Addr) -> io::Result<()> {
    let addr = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from(to).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: `packet` and `addr` are valid for the lengths passed and outlive the
    // call; `sock` is an open socket we own.
    let sent = unsafe {
        libc::sendto(
            sock.as_raw_fd(),
            packet.as_ptr().cast(),
            packet.len(),
            0,
            std::ptr::from_ref(&addr).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Reads replies until every target answered or `deadline` passes, removing
/// each answering target's sequence number from `missing`.
fn collect_replies(
    sock: &OwnedFd,
    targets: &[Ipv4Addr],
    id: u16,
    missing: &mut BTreeSet<u16>,
    deadline: Instant,
) -> io::Result<()> {
    let mut buf = [0u8; 1500];
    while !missing.is_empty() && Instant::now() < deadline {
        let len = match socket::recv(sock.as_raw_fd(), &mut buf, MsgFlags::empty()) {
            Ok(len) => len,
            Err(Errno::EAGAIN | Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        };
        if let Some((from, seq)) = parse_reply(&buf[..len], id) {
            if targets.get(usize::from(seq)) == Some(&from) {
                missing.remove(&seq);
            }
        }
    }
    Ok(())
}

/// An ICMP echo request with our id, the sequence number and a short payload.
fn echo_request(id: u16, seq: u16) -> [u8; 16] {
    let mut packet = [0u8; 16];
    packet[0] = ECHO_REQUEST;
    packet[4..6].copy_from_slice(&id.to_be_bytes());
    packet[6..8].copy_from_slice(&seq.to_be_bytes());
    packet[8..].copy_from_slice(b"peapod!!");
    // The kernel fills in the IPv4 header but not the ICMP checksum.
    let sum = checksum(&packet);
    packet[2..4].copy_from_slice(&sum.to_be_bytes());
    packet
}

/// The source address and sequence number of an echo reply carrying `id`, from a
/// packet as a raw IPv4 socket reads it (IP header first).
fn parse_reply(packet: &[u8], id: u16) -> Option<(Ipv4Addr, u16)> {
    let header_len = usize::from(packet.first()? & 0x0f) * 4;
    if header_len < 20 {
        return None;
    }
    let icmp = packet.get(header_len..header_len + 8)?;
    let source = Ipv4Addr::new(packet[12], packet[13], packet[14], packet[15]);
    let reply_id = u16::from_be_bytes([icmp[4], icmp[5]]);
    (icmp[0] == ECHO_REPLY && icmp[1] == 0 && reply_id == id)
        .then(|| (source, u16::from_be_bytes([icmp[6], icmp[7]])))
}

/// The Internet checksum (RFC 1071) of `data`.
fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|pair| u32::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}
