//! The payloads of API-data volumes: configMap, secret, downwardAPI and projected (with
//! serviceAccountToken) sources turned into files (items key → path, modes, `optional`)
//! as upstream does.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{DownwardAPIVolumeFile, KeyToPath, Volume, VolumeProjection};

use super::atomic::{FileProjection, Payload};
use super::source::{self, Kind, ObjectSource};
use crate::pod::downward::{self, Context, Use};

/// The mode of files when the volume sets no `defaultMode` (0644).
pub const DEFAULT_MODE: i32 = 0o644;

/// The kinds of volume this module writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiVolume {
    /// `configMap`.
    ConfigMap,
    /// `secret`.
    Secret,
    /// `downwardAPI`.
    DownwardApi,
    /// `projected`.
    Projected,
}

impl ApiVolume {
    /// The kind of `volume`, if it is an API-data volume.
    pub fn of(volume: &Volume) -> Option<ApiVolume> {
        if volume.config_map.is_some() {
            Some(ApiVolume::ConfigMap)
        } else if volume.secret.is_some() {
            Some(ApiVolume::Secret)
        } else if volume.downward_api.is_some() {
            Some(ApiVolume::DownwardApi)
        } else if volume.projected.is_some() {
            Some(ApiVolume::Projected)
        } else {
            None
        }
    }

    /// The plugin directory name upstream uses under the pod's volumes dir.
    pub fn plugin_dir(self) -> &'static str {
        match self {
            ApiVolume::ConfigMap => "kubernetes.io~configmap",
            ApiVolume::Secret => "kubernetes.io~secret",
            ApiVolume::DownwardApi => "kubernetes.io~downward-api",
            ApiVolume::Projected => "kubernetes.io~projected",
        }
    }

    /// Whether upstream keeps this volume in memory (secrets and projected volumes, which
    /// may hold tokens and keys).
    pub fn in_memory(self) -> bool {
        matches!(self, ApiVolume::Secret | ApiVolume::Projected)
    }
}

/// The files of an API-data volume.
pub fn payload(
    volume: &Volume,
    ctx: &Context<'_>,
    objects: &dyn ObjectSource,
) -> Result<Payload, String> {
    let namespace = ctx.pod.metadata.namespace.as_deref().unwrap_or_default();
    let mut out = Payload::new();
    if let Some(cm) = &volume.config_map {
        let mode = cm.default_mode.unwrap_or(DEFAULT_MODE);
        let object = Object {
            kind: Kind::ConfigMap,
            name: &cm.name,
            items: cm.items.as_deref().unwrap_or_default(),
            optional: cm.optional.unwrap_or(false),
        };
        object.project(objects, namespace, mode, &mut out)?;
    } else if let Some(secret) = &volume.secret {
        let mode = secret.default_mode.unwrap_or(DEFAULT_MODE);
        let name = secret.secret_name.clone().unwrap_or_default();
        let object = Object {
            kind: Kind::Secret,
            name: &name,
            items: secret.items.as_deref().unwrap_or_default(),
            optional: secret.optional.unwrap_or(false),
        };
        object.project(objects, namespace, mode, &mut out)?;
    } else if let Some(api) = &volume.downward_api {
        let mode = api.default_mode.unwrap_or(DEFAULT_MODE);
        downward_files(
            api.items.as_deref().unwrap_or_default(),
            ctx,
            mode,
            &mut out,
        )?;
    } else if let Some(projected) = &volume.projected {
        let mode = projected.default_mode.unwrap_or(DEFAULT_MODE);
        let mut errors = Vec::new();
        for projection in projected.sources.iter().flatten() {
            if let Err(e) = project(projection, ctx, objects, namespace, mode, &mut out) {
                errors.push(e);
            }
        }
        if !errors.is_empty() {
            return Err(errors.join(", "));
        }
    }
    Ok(out)
}

fn project(
    projection: &VolumeProjection,
    ctx: &Context<'_>,
    objects: &dyn ObjectSource,
    namespace: &str,
    mode: i32,
    out: &mut Payload,
) -> Result<(), String> {
    if let Some(cm) = &projection.config_map {
        let object = Object {
            kind: Kind::ConfigMap,
            name: &cm.name,
            items: cm.items.as_deref().unwrap_or_default(),
            optional: cm.optional.unwrap_or(false),
        };
        object.project(objects, namespace, mode, out)
    } else if let Some(secret) = &projection.secret {
        let object = Object {
            kind: Kind::Secret,
            name: &secret.name,
            items: secret.items.as_deref().unwrap_or_default(),
            optional: secret.optional.unwrap_or(false),
        };
        object.project(objects, namespace, mode, out)
    } else if let Some(api) = &projection.downward_api {
        downward_files(api.items.as_deref().unwrap_or_default(), ctx, mode, out)
    } else if let Some(token) = &projection.service_account_token {
        let data = objects.service_account_token(ctx.pod, token)?.into_bytes();
        // Upstream writes tokens with the volume's mode (0644 by default) as well.
        out.insert(
            token.path.clone(),
            FileProjection {
                data,
                mode: mode as u32,
            },
        );
        Ok(())
    } else {
        Err("unsupported projected volume source".into())
    }
}

/// A configMap or secret reference of a volume.
struct Object<'a> {
    kind: Kind,
    name: &'a str,
    items: &'a [KeyToPath],
    optional: bool,
}

impl Object<'_> {
    fn project(
        &self,
        objects: &dyn ObjectSource,
        namespace: &str,
        mode: i32,
        out: &mut Payload,
    ) -> Result<(), String> {
        let data = match source::data(objects, self.kind, namespace, self.name)? {
            Some(data) => data,
            None if self.optional => BTreeMap::new(),
            None => return Err(self.kind.not_found(self.name)),
        };
        let file = |bytes: &Vec<u8>, mode: i32| FileProjection {
            data: bytes.clone(),
            mode: mode as u32,
        };
        if self.items.is_empty() {
            for (key, bytes) in &data {
                out.insert(key.clone(), file(bytes, mode));
            }
            return Ok(());
        }
        for item in self.items {
            let Some(bytes) = data.get(&item.key) else {
                if self.optional {
                    continue;
                }
                return Err(match self.kind {
                    Kind::ConfigMap => {
                        format!("configmap references non-existent config key: {}", item.key)
                    }
                    Kind::Secret => {
                        format!("secret references non-existent secret key: {}", item.key)
                    }
                });
            };
            out.insert(item.path.clone(), file(bytes, item.mode.unwrap_or(mode)));
        }
        Ok(())
    }
}

fn downward_files(
    items: &[DownwardAPIVolumeFile],
    ctx: &Context<'_>,
    mode: i32,
    out: &mut Payload,
) -> Result<(), String> {
    for item in items {
        let value = match (&item.field_ref, &item.resource_field_ref) {
            (Some(field), None) => downward::field_value(ctx, field, Use::Volume)?,
            (None, Some(resource)) => downward::resource_value(ctx, "", resource)?,
            _ => {
                return Err(format!(
                "downwardAPI item {:?}: exactly one of fieldRef and resourceFieldRef is required",
                item.path
            ))
            }
        };
        out.insert(
            item.path.clone(),
            FileProjection {
                data: value.into_bytes(),
                mode: item.mode.unwrap_or(mode) as u32,
            },
        );
    }
    Ok(())
}
