//! `linux.resources.blockIO`: weights and throttles, as cgroup v1 `blkio.*` lines and cgroup
//! v2 `io.*` lines (pure), and the writes (v1: `blkio` controller, v2: `io`).
//!
//! As runc: v1 uses the BFQ files (`blkio.bfq.weight`) when the kernel has them, else the CFQ
//! ones (`blkio.weight`); a weight the host has no file for is an error, since the kernel
//! would not honour it. v2 writes `io.bfq.weight` when BFQ is there (weights as is, and the
//! per-device weights), else `io.weight` with the weight converted; `leafWeight` and, without
//! BFQ, per-device weights have no v2 file and are reported as not applied.

use std::path::Path;

use oci_spec::runtime::{LinuxBlockIo, LinuxThrottleDevice};

use super::file::write;
use super::CgroupError;

/// The weights the kernel accepts (v1 and BFQ).
const WEIGHT: std::ops::RangeInclusive<u16> = 10..=1000;

/// Validated `blockIO` settings; 0 and empty mean unset.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlockIo {
    /// Relative weight, 10 to 1000.
    pub weight: u16,
    /// Weight of the cgroup's own tasks against its children (v1 CFQ/BFQ only).
    pub leaf_weight: u16,
    /// Per-device (major, minor, weight, leaf weight); 0: unset.
    pub weight_devices: Vec<(i64, i64, u16, u16)>,
    /// Throttles as (v1 file, v2 key, major, minor, rate).
    pub throttles: Vec<(&'static str, &'static str, i64, i64, u64)>,
}

impl BlockIo {
    /// Validate the OCI settings.
    pub fn new(io: &LinuxBlockIo) -> Result<BlockIo, CgroupError> {
        let weight = |field, w: Option<u16>| match w {
            None | Some(0) => Ok(0),
            Some(w) if WEIGHT.contains(&w) => Ok(w),
            Some(w) => Err(CgroupError::InvalidValue {
                field,
                value: w.to_string(),
                reason: "the kernel accepts 10 to 1000",
            }),
        };
        let mut out = BlockIo {
            weight: weight("blockIO.weight", io.weight())?,
            leaf_weight: weight("blockIO.leafWeight", io.leaf_weight())?,
            ..BlockIo::default()
        };
        for device in io.weight_device().as_deref().unwrap_or_default() {
            out.weight_devices.push((
                device.major(),
                device.minor(),
                weight("blockIO.weightDevice[].weight", device.weight())?,
                weight("blockIO.weightDevice[].leafWeight", device.leaf_weight())?,
            ));
        }
        let throttles: [(_, _, &Option<Vec<LinuxThrottleDevice>>); 4] = [
            (
                "blkio.throttle.read_bps_device",
                "rbps",
                io.throttle_read_bps_device(),
            ),
            (
                "blkio.throttle.write_bps_device",
                "wbps",
                io.throttle_write_bps_device(),
            ),
            (
                "blkio.throttle.read_iops_device",
                "riops",
                io.throttle_read_iops_device(),
            ),
            (
                "blkio.throttle.write_iops_device",
                "wiops",
                io.throttle_write_iops_device(),
            ),
        ];
        for (file, key, devices) in throttles {
            for device in devices.as_deref().unwrap_or_default() {
                out.throttles
                    .push((file, key, device.major(), device.minor(), device.rate()));
            }
        }
        Ok(out)
    }

    /// Whether anything is to be written.
    pub fn is_set(&self) -> bool {
        *self != BlockIo::default()
    }

    /// Fields v2 cannot apply without BFQ (`bfq`: whether `io.bfq.weight` exists).
    pub fn v2_ignored(&self, bfq: bool) -> Vec<&'static str> {
        let mut ignored = Vec::new();
        let leaf = self.leaf_weight != 0 || self.weight_devices.iter().any(|d| d.3 != 0);
        if leaf {
            ignored.push("blockIO.leafWeight");
        }
        if !bfq && self.weight_devices.iter().any(|d| d.2 != 0) {
            ignored.push("blockIO.weightDevice");
        }
        ignored
    }
}

/// runc's conversion of a v1 weight (10-1000) to v2 `io.weight` (1-10000).
pub fn io_weight(weight: u16) -> u64 {
    match weight {
        0 => 0,
        w => 1 + (u64::from(w).saturating_sub(10)) * 9_999 / 990,
    }
}

/// Write the v1 settings into the blkio cgroup `dir`.
pub fn apply_v1(dir: &Path, io: &BlockIo) -> Result<(), CgroupError> {
    let bfq = dir.join("blkio.bfq.weight").exists();
    let (weight, weight_device) = if bfq {
        ("blkio.bfq.weight", "blkio.bfq.weight_device")
    } else {
        ("blkio.weight", "blkio.weight_device")
    };
    let need = |field: &'static str, file: &str| {
        if dir.join(file).exists() {
            Ok(())
        } else {
            Err(CgroupError::Unsupported {
                field,
                reason: format!(
                    "{} does not exist: the host's block IO scheduler offers no such weight",
                    dir.join(file).display()
                ),
            })
        }
    };
    if io.weight != 0 {
        need("blockIO.weight", weight)?;
        write(dir, weight, &io.weight.to_string())?;
    }
    if io.leaf_weight != 0 {
        need("blockIO.leafWeight", "blkio.leaf_weight")?;
        write(dir, "blkio.leaf_weight", &io.leaf_weight.to_string())?;
    }
    for &(major, minor, weight, leaf) in &io.weight_devices {
        if weight != 0 {
            need("blockIO.weightDevice", weight_device)?;
            write(dir, weight_device, &format!("{major}:{minor} {weight}"))?;
        }
        if leaf != 0 {
            need(
                "blockIO.weightDevice[].leafWeight",
                "blkio.leaf_weight_device",
            )?;
            write(
                dir,
                "blkio.leaf_weight_device",
                &format!("{major}:{minor} {leaf}"),
            )?;
        }
    }
    for &(file, _, major, minor, rate) in &io.throttles {
        write(dir, file, &format!("{major}:{minor} {rate}"))?;
    }
    Ok(())
}

/// Write the v2 settings into the cgroup `dir` (the `io` controller enabled); what
/// [`BlockIo::v2_ignored`] names is left out.
pub fn apply_v2(dir: &Path, io: &BlockIo) -> Result<(), CgroupError> {
    let bfq = dir.join("io.bfq.weight").exists();
    if io.weight != 0 {
        if bfq {
            write(dir, "io.bfq.weight", &io.weight.to_string())?;
        } else {
            write(dir, "io.weight", &io_weight(io.weight).to_string())?;
        }
    }
    if bfq {
        for &(major, minor, weight, _) in &io.weight_devices {
            if weight != 0 {
                write(dir, "io.bfq.weight", &format!("{major}:{minor} {weight}"))?;
            }
        }
    }
    for &(_, key, major, minor, rate) in &io.throttles {
        write(dir, "io.max", &format!("{major}:{minor} {key}={rate}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{
        LinuxBlockIoBuilder, LinuxThrottleDeviceBuilder, LinuxWeightDeviceBuilder,
    };

    #[test]
    fn weights_out_of_range_are_refused_and_throttles_keep_their_order() {
        let bad = LinuxBlockIoBuilder::default()
            .weight(5_u16)
            .build()
            .unwrap();
        let err = BlockIo::new(&bad).unwrap_err().to_string();
        assert!(err.contains("blockIO.weight 5"), "{err}");
        let throttle = |major: i64, rate: u64| {
            LinuxThrottleDeviceBuilder::default()
                .major(major)
                .minor(0)
                .rate(rate)
                .build()
                .unwrap()
        };
        let io = LinuxBlockIoBuilder::default()
            .throttle_read_bps_device(vec![throttle(8, 100), throttle(9, 200)])
            .throttle_write_iops_device(vec![throttle(8, 5)])
            .build()
            .unwrap();
        let io = BlockIo::new(&io).unwrap();
        assert_eq!(
            io.throttles,
            [
                ("blkio.throttle.read_bps_device", "rbps", 8, 0, 100),
                ("blkio.throttle.read_bps_device", "rbps", 9, 0, 200),
                ("blkio.throttle.write_iops_device", "wiops", 8, 0, 5),
            ]
        );
        assert!(io.is_set());
        assert!(!BlockIo::default().is_set());
    }

    #[test]
    fn v2_weight_conversion_and_what_v2_cannot_apply() {
        assert_eq!(io_weight(0), 0);
        assert_eq!(io_weight(10), 1);
        assert_eq!(io_weight(500), 4950);
        assert_eq!(io_weight(1000), 10_000);
        let device = LinuxWeightDeviceBuilder::default()
            .major(8)
            .minor(0)
            .weight(300_u16)
            .build()
            .unwrap();
        let io = LinuxBlockIoBuilder::default()
            .leaf_weight(20_u16)
            .weight_device(vec![device])
            .build()
            .unwrap();
        let io = BlockIo::new(&io).unwrap();
        assert_eq!(
            io.v2_ignored(false),
            ["blockIO.leafWeight", "blockIO.weightDevice"]
        );
        assert_eq!(io.v2_ignored(true), ["blockIO.leafWeight"]);
    }

    #[test]
    fn v1_weights_need_the_schedulers_files() {
        let dir = tempfile::tempdir().unwrap();
        let io = BlockIo {
            weight: 300,
            ..BlockIo::default()
        };
        let err = apply_v1(dir.path(), &io).unwrap_err().to_string();
        assert!(err.starts_with("linux.resources.blockIO.weight: "), "{err}");
        assert!(err.contains("blkio.weight does not exist"), "{err}");
        std::fs::write(dir.path().join("blkio.bfq.weight"), "").unwrap();
        apply_v1(dir.path(), &io).unwrap();
        let written = std::fs::read_to_string(dir.path().join("blkio.bfq.weight")).unwrap();
        assert_eq!(written, "300");
    }
}
