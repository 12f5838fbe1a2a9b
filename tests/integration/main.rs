//! Integration tests: drive the real `builder` binary against throwaway stores.
//! They need root (namespaces, overlayfs); without it they skip and say so.

mod build;
mod cache;
mod cache_export;
mod concurrent;
mod dockerfile;
mod export;
mod gc;
mod hygiene;
mod media_types;
mod mounts;
mod platform;
mod progress;
mod registry;
mod run;
mod sandbox;
mod save;
mod store;
mod util;
