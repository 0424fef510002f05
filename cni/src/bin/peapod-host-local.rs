//! `peapod-host-local`: an IPAM plugin compatible with the reference `host-local` (same config, same files).
//!
//! ADD reserves one address per range set and returns the abbreviated IPAM
//! result; DEL releases (idempotently); CHECK verifies the reservation; GC
//! releases everything not in `cni.dev/valid-attachments`; STATUS reports
//! whether every range set still has a free address.

use cni::ipam::config::{DEFAULT_DATA_DIR, KNOWN_ARGS};
use cni::ipam::{resolv_conf, Allocator, DiskStore, IpamConfig};
use cni::plugin::{self, Plugin, Request};
use cni::spec::{Attachment, CniResult, Code, Error};
use std::path::Path;

/// The plugin; all state lives in the disk store.
struct HostLocal;

/// The IPAM config and the network's store for a request.
fn load(req: &Request) -> Result<(IpamConfig, DiskStore), Error> {
    let config = IpamConfig::from_netconf(&req.config, &req.env.args)?;
    let store = DiskStore::open(
        config.data_dir_or(Path::new(DEFAULT_DATA_DIR)),
        &config.name,
    )?;
    Ok((config, store))
}

fn holder(req: &Request) -> Attachment {
    Attachment {
        container_id: req.env.container_id.clone(),
        ifname: req.env.ifname.clone(),
    }
}

impl Plugin for HostLocal {
    fn add(&self, req: &Request) -> Result<CniResult, Error> {
        req.env.args.check_known(&KNOWN_ARGS)?;
        let (config, store) = load(req)?;
        let dns = match &config.resolv_conf {
            Some(path) => resolv_conf::read(path).map_err(|e| {
                Error::new(
                    Code::Io,
                    format!("failed to read resolvConf {}", path.display()),
                )
                .with_details(e.to_string())
            })?,
            None => Default::default(),
        };
        let mut locked = store.lock()?;
        let ips = Allocator::new(&mut locked).allocate_all(&config, &holder(req))?;
        Ok(CniResult {
            cni_version: req.version.as_str().to_string(),
            ips,
            routes: config.routes,
            dns,
            ..Default::default()
        })
    }

    fn del(&self, req: &Request) -> Result<(), Error> {
        let (_, store) = load(req)?;
        let mut locked = store.lock()?;
        Allocator::new(&mut locked).release(&holder(req))?;
        Ok(())
    }

    fn check(&self, req: &Request) -> Result<(), Error> {
        let (config, store) = load(req)?;
        let mut locked = store.lock()?;
        let held = Allocator::new(&mut locked).held_by(&holder(req))?;
        let missing = |ip| {
            Error::new(
                Code::INTERNAL,
                format!(
                    "no reservation for container {} in {ip}",
                    req.env.container_id
                ),
            )
        };
        for set in &config.ranges {
            if !held.iter().any(|ip| set.contains(*ip)) {
                return Err(missing(format!("range set {set}")));
            }
        }
        let prev = req.config.prev_result()?.unwrap_or_default();
        for ip in prev.ips.iter().map(|c| c.address.addr) {
            if config.ranges.iter().any(|s| s.contains(ip)) && !held.contains(&ip) {
                return Err(missing(ip.to_string()));
            }
        }
        Ok(())
    }

    fn gc(&self, req: &Request) -> Result<(), Error> {
        let valid = req
            .config
            .valid_attachments()?
            .ok_or_else(|| Error::new(Code::InvalidConfig, "GC needs cni.dev/valid-attachments"))?;
        let (_, store) = load(req)?;
        let mut locked = store.lock()?;
        Allocator::new(&mut locked).gc(&valid)?;
        Ok(())
    }

    fn status(&self, req: &Request) -> Result<(), Error> {
        let (config, store) = load(req)?;
        let mut locked = store.lock()?;
        let allocator = Allocator::new(&mut locked);
        for set in &config.ranges {
            if !allocator.has_free(set)? {
                return Err(Error::new(
                    Code::NotAvailable,
                    format!("no free addresses in range set {set}"),
                ));
            }
        }
        Ok(())
    }
}

fn main() {
    plugin::run(&HostLocal)
}
