//! `linux.resources.hugepageLimits`: one limit per huge page size, in the v1 file
//! `hugetlb.<size>.limit_in_bytes` or the v2 file `hugetlb.<size>.max`.
//!
//! On a hybrid host the hugetlb controller may exist only on the unified hierarchy (as on
//! the development host); the limits are then written there, where runc gives up.

use std::path::Path;

use oci_spec::runtime::LinuxHugepageLimit;

use super::file::write;
use super::CgroupError;

/// One validated limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HugePageLimit {
    /// The page size as the kernel names it in file names: `2MB`, `1GB`, `64KB`.
    pub size: String,
    /// The limit in bytes.
    pub limit: u64,
}

impl HugePageLimit {
    /// The file the limit goes to on cgroup v1 (`v2`: false) or v2.
    pub fn file(&self, v2: bool) -> String {
        let suffix = if v2 { "max" } else { "limit_in_bytes" };
        format!("hugetlb.{}.{suffix}", self.size)
    }
}

/// Validate the page sizes: a number and `KB`, `MB` or `GB`, as the kernel spells them.
pub fn limits(config: &[LinuxHugepageLimit]) -> Result<Vec<HugePageLimit>, CgroupError> {
    config
        .iter()
        .map(|h| {
            let size = h.page_size();
            let valid = ["KB", "MB", "GB"].iter().any(|unit| {
                size.strip_suffix(unit)
                    .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            });
            if !valid {
                return Err(CgroupError::InvalidValue {
                    field: "hugepageLimits[].pageSize",
                    value: size.clone(),
                    reason: "use a size such as 2MB or 1GB",
                });
            }
            let limit = u64::try_from(h.limit()).map_err(|_| CgroupError::InvalidValue {
                field: "hugepageLimits[].limit",
                value: h.limit().to_string(),
                reason: "use a byte count of 0 or more",
            })?;
            Ok(HugePageLimit {
                size: size.clone(),
                limit,
            })
        })
        .collect()
}

/// Write `limits` into the hugetlb cgroup `dir`; a page size the kernel does not offer (no
/// such file) is an error that names it.
pub fn apply(dir: &Path, limits: &[HugePageLimit], v2: bool) -> Result<(), CgroupError> {
    for limit in limits {
        let file = limit.file(v2);
        if !dir.join(&file).exists() {
            return Err(CgroupError::Unsupported {
                field: "hugepageLimits",
                reason: format!(
                    "{} does not exist: the kernel has no {} huge pages",
                    dir.join(&file).display(),
                    limit.size
                ),
            });
        }
        write(dir, &file, &limit.limit.to_string())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::LinuxHugepageLimitBuilder;

    fn limit(size: &str) -> LinuxHugepageLimit {
        LinuxHugepageLimitBuilder::default()
            .page_size(size)
            .limit(1_i64 << 21)
            .build()
            .unwrap()
    }

    #[test]
    fn page_sizes_are_checked_and_named_in_files() {
        let ok = limits(&[limit("2MB"), limit("1GB")]).unwrap();
        assert_eq!(ok[0].file(false), "hugetlb.2MB.limit_in_bytes");
        assert_eq!(ok[1].file(true), "hugetlb.1GB.max");
        let mut negative = limit("2MB");
        negative.set_limit(-1);
        let err = limits(&[negative]).unwrap_err().to_string();
        assert!(err.contains("hugepageLimits[].limit -1"), "{err}");
        for bad in ["2M", "MB", "2 MB", "../x", "2mb"] {
            let err = limits(&[limit(bad)]).unwrap_err().to_string();
            assert!(err.contains("pageSize"), "{err}");
        }
    }

    #[test]
    fn an_unknown_size_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("hugetlb.2MB.max"), "max").unwrap();
        let ok = limits(&[limit("2MB")]).unwrap();
        apply(dir.path(), &ok, true).unwrap();
        let written = std::fs::read_to_string(dir.path().join("hugetlb.2MB.max")).unwrap();
        assert_eq!(written, "2097152");
        let err = apply(dir.path(), &limits(&[limit("1GB")]).unwrap(), true).unwrap_err();
        assert!(err.to_string().contains("no 1GB huge pages"), "{err}");
    }
}
