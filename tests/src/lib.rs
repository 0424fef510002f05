//! Harness for peapod's integration tests: real containers, run as root, by
//! the runtime's runc-compatible CLI.
//!
//! # Layout
//! - [`cli`]: finds the runtime under test (`PEAPOD_RUNTIME`, else
//!   `target/<profile>/peapod-runtime`) and runs it ([`run`], [`Output`]).
//! - [`bundle`]: [`Bundle`], a busybox rootfs plus a `config.json` edited as JSON.
//! - [`spec`]: the default spec `runc spec` writes, and capability masks.
//! - [`container`]: [`Container`], a guard with a unique id and state dir
//!   that force-deletes the container on drop.
//! - [`host`]: the root check, namespace and cgroup lookups, mount tables,
//!   and [`Netns`], a throwaway network namespace.
//! - [`console`]: receiving a pty master over `--console-socket`.
//! - [`registry`]: [`Registry`], a private `docker-registry` on a loopback port,
//!   anonymous or with htpasswd or token auth.
//! - [`token`]: [`token::TokenServer`], the bearer-token server of a token-auth registry.
//! - [`peapod`]: [`peapod::Peapod`], the node CLI with an image store root of its own.
//! - [`pod`]: [`pod::TestPod`], a pod sandbox in throwaway locations ([`pod::Scratch`])
//!   with busybox containers run by the runtime CLI or a shim, taken down on drop.
//! - [`kubelet`]: [`kubelet::Kubelet`], a `peapod-kubelet` with a node of its own and
//!   its pod network in a private host network namespace.
//! - [`proxy`]: [`proxy::CuttingProxy`], a loopback proxy that cuts a download midway.
//! - [`apiserver`]: [`apiserver::ApiServer`], a fake Kubernetes API server (a test double)
//!   that kube-rs and the real `kubectl` talk to, proxying pod streams to kubelets.
//! - [`pki`]: [`pki::Pki`], a throwaway CA with the API server's kubelet-client certificate.
//! - [`oci`]: test images built from a description (OCI layouts, docker-save
//!   and OCI archives) and pushed with skopeo.
//!
//! A test builds a [`Bundle`], edits its spec, wraps it in a [`Container`]
//! and checks what the container sees from inside, usually by running
//! `sh -c '...'` in the foreground and reading its standard output.
#![warn(missing_docs)]

pub mod apiserver;
pub mod bundle;
pub mod cli;
pub mod console;
pub mod container;
pub mod host;
pub mod kubelet;
pub mod oci;
pub mod peapod;
pub mod pki;
pub mod pod;
pub mod proxy;
pub mod registry;
pub mod spec;
pub mod token;
pub mod tree;

pub use bundle::Bundle;
pub use cli::{run, run_in, runtime_path, Output};
pub use console::{ConsoleSocket, Pty};
pub use container::Container;
pub use host::{require_root, Netns};
pub use registry::Registry;
