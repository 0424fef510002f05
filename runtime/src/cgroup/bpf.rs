//! The bpf(2) calls that put a device filter on a cgroup v2 directory: load the program,
//! attach it (`BPF_F_ALLOW_MULTI`, so filters of parent cgroups keep applying), detach it.
//!
//! Plain libc syscalls: the three commands need a few fields of `union bpf_attr`, which is
//! less code than a BPF crate (aya, libbpf-rs) would pull in, and no C toolchain.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use super::device_filter::Insn;
use super::CgroupError;

/// `enum bpf_cmd` values.
const BPF_PROG_LOAD: libc::c_int = 5;
const BPF_PROG_ATTACH: libc::c_int = 8;
const BPF_PROG_DETACH: libc::c_int = 9;
/// `BPF_PROG_TYPE_CGROUP_DEVICE`.
const PROG_TYPE_CGROUP_DEVICE: u32 = 15;
/// `BPF_CGROUP_DEVICE`, the attach type.
const ATTACH_CGROUP_DEVICE: u32 = 6;
/// Let other programs sit on the same cgroup, and those of its ancestors apply too.
const F_ALLOW_MULTI: u32 = 2;
/// The verifier's log, returned in errors when the kernel refuses the program.
const LOG_SIZE: usize = 16 * 1024;

/// The `BPF_PROG_LOAD` part of `union bpf_attr`, up to `expected_attach_type`.
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// The `BPF_PROG_ATTACH`/`BPF_PROG_DETACH` part of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct AttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

fn bpf<T>(cmd: libc::c_int, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a live, initialised `repr(C)` prefix of `union bpf_attr` whose size
    // is passed along; the kernel zero-fills what it does not receive and reads no further.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T as *mut libc::c_void,
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// A device filter loaded in the kernel; dropping it closes the descriptor, which leaves the
/// program in place on every cgroup it was attached to (the cgroup keeps it until removed).
#[derive(Debug)]
pub struct DeviceProgram {
    fd: OwnedFd,
}

impl DeviceProgram {
    /// Load `insns` as a `BPF_PROG_TYPE_CGROUP_DEVICE` program.
    pub fn load(insns: &[Insn]) -> Result<DeviceProgram, CgroupError> {
        let license = CString::from(c"Apache-2.0");
        let mut log = vec![0u8; LOG_SIZE];
        let mut name = [0u8; 16];
        name[..7].copy_from_slice(b"peapod\0");
        let mut attr = ProgLoadAttr {
            prog_type: PROG_TYPE_CGROUP_DEVICE,
            insn_cnt: insns.len() as u32,
            insns: insns.as_ptr() as u64,
            license: license.as_ptr() as u64,
            log_level: 1,
            log_size: LOG_SIZE as u32,
            log_buf: log.as_mut_ptr() as u64,
            prog_name: name,
            expected_attach_type: ATTACH_CGROUP_DEVICE,
            ..ProgLoadAttr::default()
        };
        let fd = bpf(BPF_PROG_LOAD, &mut attr).map_err(|source| {
            let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
            CgroupError::DeviceFilterLoad {
                log: String::from_utf8_lossy(&log[..end]).trim().to_owned(),
                source,
            }
        })?;
        // SAFETY: a successful BPF_PROG_LOAD returns a new descriptor that we now own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        Ok(DeviceProgram { fd })
    }

    /// Attach the program to the cgroup v2 directory `dir`, beside any already there.
    pub fn attach(&self, dir: &Path) -> Result<(), CgroupError> {
        self.call(BPF_PROG_ATTACH, dir, F_ALLOW_MULTI)
            .map_err(|source| CgroupError::DeviceFilterAttach {
                dir: dir.to_path_buf(),
                source,
            })
    }

    /// Detach the program from `dir` (the cgroup's removal does that too).
    pub fn detach(&self, dir: &Path) -> Result<(), CgroupError> {
        self.call(BPF_PROG_DETACH, dir, 0)
            .map_err(|source| CgroupError::DeviceFilterAttach {
                dir: dir.to_path_buf(),
                source,
            })
    }

    fn call(&self, cmd: libc::c_int, dir: &Path, flags: u32) -> io::Result<()> {
        let cgroup = File::open(dir)?;
        let mut attr = AttachAttr {
            target_fd: cgroup.as_raw_fd() as u32,
            attach_bpf_fd: self.fd.as_raw_fd() as u32,
            attach_type: ATTACH_CGROUP_DEVICE,
            attach_flags: flags,
            ..AttachAttr::default()
        };
        bpf(cmd, &mut attr).map(drop)
    }
}
