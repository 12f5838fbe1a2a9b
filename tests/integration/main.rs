//! Integration tests: drive the real `builder` binary against throwaway stores.
//! They need root (namespaces, overlayfs); without it they skip and say so.

mod big_layers;
mod build;
mod cache;
mod cache_export;
mod checks;
mod concurrent;
mod direct_copy;
mod dockerfile;
mod export;
mod gc;
mod git;
mod git_http;
mod hostile;
mod hygiene;
mod media_types;
mod mounts;
mod platform;
mod progress;
mod pull_index;
mod push_packed;
mod registry;
mod reliability;
mod rootless;
mod run;
mod sandbox;
mod save;
mod snapshotter;
mod ssh;
mod store;
mod tty;
mod util;
