//! `peapod images`, `rmi`, `image import` and `image prune`: the stored images.

use anyhow::{bail, Context};
use runtime::image::{archive, Image, Reference, Store};
use std::path::PathBuf;

/// Arguments of `peapod images` / `peapod image ls`.
#[derive(clap::Args)]
pub struct ListArgs {
    /// Print image ids only.
    #[arg(short, long)]
    quiet: bool,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
}

/// How `images` prints.
#[derive(Clone, Copy, clap::ValueEnum)]
enum Format {
    /// Aligned columns, as `docker images` prints them.
    Table,
    /// The stored records as a JSON array.
    Json,
}

/// Arguments of `peapod rmi` / `peapod image rm`.
#[derive(clap::Args)]
pub struct RemoveArgs {
    /// Image names (`nginx`, `127.0.0.1:5000/app:1`) or ids (a unique prefix is enough).
    #[arg(required = true, value_name = "NAME|ID")]
    images: Vec<String>,
}

/// Arguments of `peapod image import`.
#[derive(clap::Args)]
pub struct ImportArgs {
    /// A `docker save` tarball or an OCI image-layout archive.
    file: PathBuf,
}

/// Lists the stored images.
pub fn list(store: &Store, args: &ListArgs) -> anyhow::Result<()> {
    let images = store.images().context("listing images")?;
    if args.quiet {
        for image in &images {
            out!("{}", image.short_id());
        }
        return Ok(());
    }
    match args.format {
        Format::Json => out!("{}", serde_json::to_string_pretty(&images)?),
        Format::Table => print_table(&images),
    }
    Ok(())
}

/// Prints `REPOSITORY TAG IMAGE ID SIZE` columns, padded to the widest cell.
fn print_table(images: &[Image]) {
    let mut rows = vec![[
        "REPOSITORY".to_string(),
        "TAG".to_string(),
        "IMAGE ID".to_string(),
        "SIZE".to_string(),
    ]];
    for image in images {
        let (repository, tag) = split_name(&image.name);
        rows.push([
            repository,
            tag,
            image.short_id().to_string(),
            human_size(image.size()),
        ]);
    }
    let mut widths = [0; 4];
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    for row in &rows {
        let line = format!(
            "{:w0$}   {:w1$}   {:w2$}   {}",
            row[0],
            row[1],
            row[2],
            row[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2]
        );
        out!("{}", line.trim_end());
    }
}

/// The REPOSITORY and TAG cells of a stored name: Docker Hub names shortened
/// as Docker shows them, `<none>` for a name pinned by digest only.
fn split_name(name: &str) -> (String, String) {
    match Reference::parse(name) {
        Ok(reference) => (
            reference.familiar_name(),
            reference.tag.unwrap_or_else(|| "<none>".into()),
        ),
        Err(_) => (name.to_string(), "<none>".into()),
    }
}

/// Sizes as `docker images` prints them: decimal units, three significant digits.
fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "kB", "MB", "GB", "TB", "PB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 999.5 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    let digits = if value >= 99.95 || unit == 0 {
        0
    } else if value >= 9.995 {
        1
    } else {
        2
    };
    let text = format!("{value:.digits$}");
    let text = if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.')
    } else {
        &text
    };
    format!("{text}{}", UNITS[unit])
}

/// Removes each named image; reports every failure, then fails if any did.
pub fn remove(store: &Store, args: &RemoveArgs) -> anyhow::Result<()> {
    if let [name] = args.images.as_slice() {
        print_removed(&store.remove(name)?);
        return Ok(());
    }
    let mut failed = 0;
    for name in &args.images {
        match store.remove(name) {
            Ok(removed) => print_removed(&removed),
            Err(err) => {
                eprintln!("peapod: removing {name}: {err}");
                failed += 1;
            }
        }
    }
    if failed > 0 {
        bail!(
            "{failed} of {} images could not be removed",
            args.images.len()
        );
    }
    Ok(())
}

/// `Untagged: <name>` per removed name, then `Deleted: <id>` once per image.
fn print_removed(removed: &[Image]) {
    for image in removed {
        out!("Untagged: {}", image.name);
    }
    let mut ids: Vec<&str> = removed.iter().map(|i| i.config.as_str()).collect();
    ids.dedup();
    for id in ids {
        out!("Deleted: {id}");
    }
}

/// Imports every image of an archive.
pub fn import(store: &Store, args: &ImportArgs) -> anyhow::Result<()> {
    let images = archive::import(store, &args.file)
        .with_context(|| format!("importing {}", args.file.display()))?;
    for image in images {
        out!("Loaded image: {} ({})", image.name, image.short_id());
    }
    Ok(())
}

/// Deletes what no image uses.
pub fn prune(store: &Store) -> anyhow::Result<()> {
    let pruned = store.prune().context("pruning the image store")?;
    out!(
        "Deleted {} blobs and {} unpacked layers, freed {}",
        pruned.blobs.len(),
        pruned.layers.len(),
        human_size(pruned.bytes)
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_docker() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(1000), "1kB");
        assert_eq!(human_size(1234), "1.23kB");
        assert_eq!(human_size(7_812_345), "7.81MB");
        assert_eq!(human_size(12_000_000), "12MB");
        assert_eq!(human_size(142_400_000), "142MB");
        assert_eq!(human_size(1_230_000_000), "1.23GB");
    }

    #[test]
    fn names_split_into_repository_and_tag() {
        let pair = |a: &str, b: &str| (a.to_string(), b.to_string());
        assert_eq!(
            split_name("docker.io/library/nginx:latest"),
            pair("nginx", "latest")
        );
        assert_eq!(
            split_name("127.0.0.1:5000/team/app:1"),
            pair("127.0.0.1:5000/team/app", "1")
        );
        let digest = format!("docker.io/user/app@sha256:{}", "a".repeat(64));
        assert_eq!(split_name(&digest), pair("user/app", "<none>"));
    }
}
