//! `linux.personality`: the execution domain (`LINUX`, or `LINUX32` for what `uname -m`
//! and 32-bit compatibility report) and flags, set with personality(2) by the container's
//! init just before exec, so the container's program inherits it.

use oci_spec::runtime::{Linux, LinuxPersonality, LinuxPersonalityDomain};

/// `PER_LINUX32` from `linux/personality.h` (`PER_LINUX` is 0).
const PER_LINUX32: u64 = 0x0008;

/// The flags a config may name, with their `linux/personality.h` values.
const FLAGS: &[(&str, u64)] = &[
    ("UNAME26", 0x002_0000),
    ("ADDR_NO_RANDOMIZE", 0x004_0000),
    ("FDPIC_FUNCPTRS", 0x008_0000),
    ("MMAP_PAGE_ZERO", 0x010_0000),
    ("ADDR_COMPAT_LAYOUT", 0x020_0000),
    ("READ_IMPLIES_EXEC", 0x040_0000),
    ("ADDR_LIMIT_32BIT", 0x080_0000),
    ("SHORT_INODE", 0x100_0000),
    ("WHOLE_SECONDS", 0x200_0000),
    ("STICKY_TIMEOUTS", 0x400_0000),
    ("ADDR_LIMIT_3GB", 0x800_0000),
];

/// The personality(2) argument for the config's `linux.personality`, if set.
pub fn value(linux: &Linux) -> Result<Option<u64>, String> {
    linux.personality().as_ref().map(persona).transpose()
}

fn persona(personality: &LinuxPersonality) -> Result<u64, String> {
    let mut value = match personality.domain() {
        LinuxPersonalityDomain::PerLinux => 0,
        LinuxPersonalityDomain::PerLinux32 => PER_LINUX32,
    };
    for flag in personality.flags().iter().flatten() {
        let bits = FLAGS
            .iter()
            .find(|(name, _)| name == flag)
            .map(|(_, bits)| *bits)
            .ok_or_else(|| {
                let known: Vec<&str> = FLAGS.iter().map(|(n, _)| *n).collect();
                format!(
                    "linux.personality.flags: unknown flag {flag:?} (known: {})",
                    known.join(", ")
                )
            })?;
        value |= bits;
    }
    Ok(value)
}

/// Set the calling process's personality (in the container's init, before exec).
pub fn apply(value: u64) -> Result<(), String> {
    // SAFETY: personality(2) takes a plain integer and changes only this process's
    // execution domain.
    let ret = unsafe { libc::personality(value as libc::c_ulong) };
    if ret == -1 {
        let err = std::io::Error::last_os_error();
        return Err(format!("linux.personality: personality({value:#x}): {err}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{LinuxBuilder, LinuxPersonalityBuilder};

    fn linux(domain: LinuxPersonalityDomain, flags: &[&str]) -> Linux {
        let personality = LinuxPersonalityBuilder::default()
            .domain(domain)
            .flags(flags.iter().map(|f| f.to_string()).collect::<Vec<_>>())
            .build()
            .unwrap();
        LinuxBuilder::default()
            .personality(personality)
            .build()
            .unwrap()
    }

    #[test]
    fn domain_and_flags_make_the_value() {
        assert_eq!(value(&Linux::default()).unwrap(), None);
        let l = linux(LinuxPersonalityDomain::PerLinux, &[]);
        assert_eq!(value(&l).unwrap(), Some(0));
        let l = linux(LinuxPersonalityDomain::PerLinux32, &["ADDR_NO_RANDOMIZE"]);
        assert_eq!(value(&l).unwrap(), Some(0x8 | 0x40000));
    }

    #[test]
    fn unknown_flags_are_refused() {
        let l = linux(LinuxPersonalityDomain::PerLinux, &["NOPE"]);
        let err = value(&l).unwrap_err();
        assert!(err.contains("unknown flag \"NOPE\""), "{err}");
    }
}
