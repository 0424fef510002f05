//! `peapod pull`: fetch an image from a registry into the store.

use anyhow::bail;
use runtime::image::auth::{Credentials, Keyring};
use runtime::image::manifest::Platform;
use runtime::image::pull::{self as image_pull, Progress, PullOptions};
use runtime::image::{Reference, Store};
use std::path::{Path, PathBuf};

/// Arguments of `peapod pull` / `peapod image pull`.
#[derive(clap::Args)]
pub struct PullArgs {
    /// The image, e.g. `nginx`, `127.0.0.1:5000/team/app:1`, `repo@sha256:…`.
    name: String,
    /// No progress bars; print only the image's name when done.
    #[arg(short, long)]
    quiet: bool,
    /// The platform to pick from a multi-platform image [default: the host's]
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    platform: Option<String>,
    /// Reach this registry (`host:port`) over plain HTTP. Loopback registries always may.
    #[arg(long = "insecure-registry", value_name = "HOST")]
    insecure_registries: Vec<String>,
    /// Credentials for the image's registry.
    #[arg(long, value_name = "USER:PASSWORD", conflicts_with = "docker_config")]
    creds: Option<String>,
    /// A docker `config.json` to take credentials from [default: $DOCKER_CONFIG/config.json,
    /// else ~/.docker/config.json, if present]
    #[arg(long, value_name = "FILE")]
    docker_config: Option<PathBuf>,
    /// Attempts per request on transient network errors.
    #[arg(long, default_value_t = 3)]
    retries: u32,
}

/// Checks the arguments and turns them into pull options, before anything
/// touches the store.
pub fn options(args: &PullArgs) -> anyhow::Result<PullOptions> {
    let reference = Reference::parse(&args.name)?;
    let mut options = PullOptions {
        keyring: keyring(&reference, args)?,
        insecure_registries: args.insecure_registries.clone(),
        retries: args.retries,
        progress: if args.quiet {
            Progress::Quiet
        } else {
            Progress::Bars
        },
        ..PullOptions::default()
    };
    if let Some(platform) = &args.platform {
        Platform::parse(platform)?;
        options.platform = platform.clone();
    }
    Ok(options)
}

/// Pulls the image and prints its id and digest.
pub async fn pull(store: &Store, args: &PullArgs, options: &PullOptions) -> anyhow::Result<()> {
    // The library's errors name the registry and image already.
    let image = image_pull::pull(store, &args.name, options).await?;
    if args.quiet {
        out!("{}", image.name);
    } else {
        out!("Pulled {}", image.name);
        out!("Image ID: {}", image.config);
        out!("Digest: {}", image.digest);
    }
    Ok(())
}

/// The credentials to offer: `--creds`, else `--docker-config`, else the
/// user's docker config when there is one.
fn keyring(reference: &Reference, args: &PullArgs) -> anyhow::Result<Keyring> {
    let mut keyring = Keyring::default();
    if let Some(creds) = &args.creds {
        let Some((username, password)) = creds.split_once(':') else {
            bail!("--creds must be USER:PASSWORD");
        };
        if username.is_empty() {
            bail!("--creds: the user name is empty");
        }
        keyring.add(
            &reference.registry,
            Credentials::Basic {
                username: username.to_string(),
                password: password.to_string(),
            },
        );
        return Ok(keyring);
    }
    match &args.docker_config {
        Some(path) => {
            // Named explicitly, it must exist (the default may be absent).
            if !path.is_file() {
                bail!("--docker-config {}: no such file", path.display());
            }
            keyring.add_docker_config(path)?;
        }
        None => {
            if let Some(path) = default_docker_config() {
                keyring.add_docker_config(&path)?;
            }
        }
    }
    Ok(keyring)
}

/// Where docker keeps its config: `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`.
fn default_docker_config() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG") {
        return Some(Path::new(&dir).join("config.json"));
    }
    std::env::var_os("HOME").map(|home| Path::new(&home).join(".docker/config.json"))
}
