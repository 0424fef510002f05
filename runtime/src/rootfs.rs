//! The container's root filesystem (placeholder until the rootfs branch lands).
use oci_spec::runtime::Spec;
use std::path::Path;
/// Why.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    /// placeholder
    #[error("rootfs: {0}")]
    Sys(String),
}
fn e(op: &str) -> impl Fn(nix::errno::Errno) -> RootfsError + '_ {
    move |x| RootfsError::Sys(format!("{op}: {x}"))
}
/// Prepare.
pub fn prepare(_spec: &Spec, rootfs: &Path, _cg: bool) -> Result<(), RootfsError> {
    use nix::mount::{mount, MsFlags};
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_SLAVE,
        None::<&str>,
    )
    .map_err(e("slave"))?;
    mount(
        Some(rootfs),
        rootfs,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(e("bind"))?;
    let _ = std::fs::create_dir_all(rootfs.join("proc"));
    mount(
        Some("proc"),
        &rootfs.join("proc"),
        Some("proc"),
        MsFlags::empty(),
        None::<&str>,
    )
    .map_err(e("proc"))?;
    let _ = std::fs::create_dir_all(rootfs.join("dev"));
    mount(
        Some("tmpfs"),
        &rootfs.join("dev"),
        Some("tmpfs"),
        MsFlags::MS_NOSUID,
        Some("mode=755"),
    )
    .map_err(e("dev"))?;
    std::fs::create_dir_all(rootfs.join("dev/pts")).map_err(|x| RootfsError::Sys(x.to_string()))?;
    mount(
        Some("devpts"),
        &rootfs.join("dev/pts"),
        Some("devpts"),
        MsFlags::empty(),
        Some("newinstance,ptmxmode=0666,mode=0620"),
    )
    .map_err(e("devpts"))?;
    let _ = std::os::unix::fs::symlink("pts/ptmx", rootfs.join("dev/ptmx"));
    let _ = std::fs::File::create(rootfs.join("dev/null"));
    mount(
        Some("/dev/null"),
        &rootfs.join("dev/null"),
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(e("null"))?;
    Ok(())
}
/// Pivot.
pub fn pivot(rootfs: &Path, _no_pivot: bool) -> Result<(), RootfsError> {
    use nix::mount::{mount, umount2, MntFlags, MsFlags};
    nix::unistd::chdir(rootfs).map_err(e("chdir"))?;
    nix::unistd::pivot_root(".", ".").map_err(e("pivot_root"))?;
    mount(
        None::<&str>,
        ".",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_SLAVE,
        None::<&str>,
    )
    .map_err(e("slave old"))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(e("umount old"))?;
    nix::unistd::chdir("/").map_err(e("chdir /"))?;
    Ok(())
}
/// Finalize.
pub fn finalize(_spec: &Spec) -> Result<(), RootfsError> {
    Ok(())
}
