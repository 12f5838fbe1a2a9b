//! Cache keys: blake3 over an explicit, versioned encoding.
//!
//! Every value that takes part in a key says how it is encoded through
//! [`StableEncode`]; nothing goes through `Debug` or `std::hash`, so keys stay the
//! same across compiler versions, platforms and processes.

use crate::ir::*;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Bumped when the encoding below changes, so old keys never match new ones.
const KEY_VERSION: u32 = 1;

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct CacheKey(#[serde(with = "hex_bytes")] pub [u8; 32]);

impl CacheKey {
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn from_hex(s: &str) -> Option<Self> {
        let bytes = hex::decode(s).ok()?;
        Some(CacheKey(bytes.try_into().ok()?))
    }

    /// Key of an arbitrary stable-encoded value under a domain tag.
    pub fn of(domain: &str, value: &impl StableEncode) -> Self {
        let mut h = KeyHasher::new(domain);
        value.encode(&mut h);
        h.finish()
    }
}

impl fmt::Display for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CacheKey({})", &self.to_hex()[..12])
    }
}

mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let s = String::deserialize(d)?;
        let v = hex::decode(&s).map_err(serde::de::Error::custom)?;
        v.try_into().map_err(|_| serde::de::Error::custom("cache key must be 32 bytes"))
    }
}

/// A blake3 hasher with typed, length-prefixed writes.
pub struct KeyHasher(blake3::Hasher);

impl KeyHasher {
    pub fn new(domain: &str) -> Self {
        let mut h = KeyHasher(blake3::Hasher::new());
        h.u32(KEY_VERSION);
        h.str(domain);
        h
    }

    pub fn u8(&mut self, v: u8) {
        self.0.update(&[v]);
    }

    pub fn u32(&mut self, v: u32) {
        self.0.update(&v.to_le_bytes());
    }

    pub fn u64(&mut self, v: u64) {
        self.0.update(&v.to_le_bytes());
    }

    pub fn bool(&mut self, v: bool) {
        self.u8(v as u8);
    }

    pub fn bytes(&mut self, v: &[u8]) {
        self.u64(v.len() as u64);
        self.0.update(v);
    }

    pub fn str(&mut self, v: &str) {
        self.bytes(v.as_bytes());
    }

    pub fn key(&mut self, k: &CacheKey) {
        self.0.update(&k.0);
    }

    pub fn finish(&self) -> CacheKey {
        CacheKey(*self.0.finalize().as_bytes())
    }
}

/// A value with an explicit cache-key encoding.
pub trait StableEncode {
    fn encode(&self, h: &mut KeyHasher);
}

impl StableEncode for str {
    fn encode(&self, h: &mut KeyHasher) {
        h.str(self)
    }
}

impl StableEncode for String {
    fn encode(&self, h: &mut KeyHasher) {
        h.str(self)
    }
}

impl StableEncode for bool {
    fn encode(&self, h: &mut KeyHasher) {
        h.bool(*self)
    }
}

impl StableEncode for u32 {
    fn encode(&self, h: &mut KeyHasher) {
        h.u32(*self)
    }
}

impl StableEncode for u64 {
    fn encode(&self, h: &mut KeyHasher) {
        h.u64(*self)
    }
}

impl StableEncode for usize {
    fn encode(&self, h: &mut KeyHasher) {
        h.u64(*self as u64)
    }
}

impl<T: StableEncode> StableEncode for Option<T> {
    fn encode(&self, h: &mut KeyHasher) {
        match self {
            None => h.u8(0),
            Some(v) => {
                h.u8(1);
                v.encode(h)
            }
        }
    }
}

impl<T: StableEncode> StableEncode for [T] {
    fn encode(&self, h: &mut KeyHasher) {
        h.u64(self.len() as u64);
        for v in self {
            v.encode(h)
        }
    }
}

impl<T: StableEncode> StableEncode for Vec<T> {
    fn encode(&self, h: &mut KeyHasher) {
        self.as_slice().encode(h)
    }
}

impl StableEncode for Op {
    fn encode(&self, h: &mut KeyHasher) {
        match self {
            Op::Source(s) => {
                h.u8(1);
                s.encode(h)
            }
            Op::Exec(e) => {
                h.u8(2);
                e.encode(h)
            }
            // FileOp's fields are encoded in place (no FileOp impl), destructured
            // here so a new field cannot stay out of the key unnoticed.
            Op::File(FileOp { actions }) => {
                h.u8(3);
                actions.encode(h)
            }
            Op::Merge => h.u8(4),
        }
    }
}

impl StableEncode for SourceOp {
    fn encode(&self, h: &mut KeyHasher) {
        match self {
            SourceOp::Scratch => h.u8(0),
            SourceOp::Image { reference, platform } => {
                h.u8(1);
                reference.encode(h);
                platform.encode(h);
            }
            SourceOp::Local { name, exclude } => {
                h.u8(2);
                name.encode(h);
                exclude.encode(h);
            }
            SourceOp::Http { url, checksum, filename } => {
                h.u8(3);
                url.encode(h);
                checksum.encode(h);
                filename.encode(h);
            }
            SourceOp::Git(git) => {
                h.u8(4);
                git.encode(h);
            }
        }
    }
}

/// The op as written; the worker keys a git source by the commit it resolves to
/// (see `CacheMap`), and that is what dependents see.
impl StableEncode for GitSource {
    fn encode(&self, h: &mut KeyHasher) {
        let GitSource { remote, reference, subdir, keep_git_dir, submodules, checksum } = self;
        remote.encode(h);
        reference.encode(h);
        subdir.encode(h);
        keep_git_dir.encode(h);
        submodules.encode(h);
        checksum.encode(h);
    }
}

impl StableEncode for ExecOp {
    fn encode(&self, h: &mut KeyHasher) {
        let ExecOp { args, env, cwd, user, network, security, mounts, extra_hosts, ulimits, shm_size } = self;
        args.encode(h);
        env.encode(h);
        cwd.encode(h);
        user.encode(h);
        h.u8(match network {
            NetworkMode::Default => 0,
            NetworkMode::Host => 1,
            NetworkMode::None => 2,
        });
        h.u8(match security {
            SecurityMode::Sandbox => 0,
            SecurityMode::Insecure => 1,
        });
        mounts.encode(h);
        // Added after keys were pinned: each is encoded only when set, behind a tag
        // of its own (no op or mount starts with 0x10..), so that a step without
        // them keeps exactly the key it had before they existed.
        if !extra_hosts.is_empty() {
            h.u8(0x10);
            extra_hosts.encode(h);
        }
        if !ulimits.is_empty() {
            h.u8(0x11);
            ulimits.encode(h);
        }
        if let Some(size) = shm_size {
            h.u8(0x12);
            size.encode(h);
        }
    }
}

impl StableEncode for HostIp {
    fn encode(&self, h: &mut KeyHasher) {
        let HostIp { host, ip } = self;
        host.encode(h);
        // The canonical text form (`10.0.0.1`, `fe80::1`), as BuildKit keeps it.
        ip.to_string().encode(h);
    }
}

impl StableEncode for Ulimit {
    fn encode(&self, h: &mut KeyHasher) {
        let Ulimit { name, soft, hard } = self;
        name.encode(h);
        soft.encode(h);
        hard.encode(h);
    }
}

impl StableEncode for Mount {
    fn encode(&self, h: &mut KeyHasher) {
        let Mount { target, kind } = self;
        target.encode(h);
        match kind {
            MountKind::Bind { input, source, readonly } => {
                h.u8(1);
                input.encode(h);
                source.encode(h);
                readonly.encode(h);
            }
            MountKind::Cache { id, sharing, from, source, mode, uid, gid, readonly } => {
                h.u8(2);
                id.encode(h);
                h.u8(match sharing {
                    CacheSharing::Shared => 0,
                    CacheSharing::Private => 1,
                    CacheSharing::Locked => 2,
                });
                from.encode(h);
                source.encode(h);
                mode.encode(h);
                uid.encode(h);
                gid.encode(h);
                readonly.encode(h);
            }
            MountKind::Tmpfs { size } => {
                h.u8(3);
                size.encode(h);
            }
            // The secret's id and placement count; its value never does.
            MountKind::Secret { id, env, required, mode, uid, gid } => {
                h.u8(4);
                id.encode(h);
                env.encode(h);
                required.encode(h);
                mode.encode(h);
                uid.encode(h);
                gid.encode(h);
            }
            MountKind::Ssh { id, required, mode, uid, gid } => {
                h.u8(5);
                id.encode(h);
                required.encode(h);
                mode.encode(h);
                uid.encode(h);
                gid.encode(h);
            }
        }
    }
}

impl StableEncode for Owner {
    fn encode(&self, h: &mut KeyHasher) {
        let Owner { user, group } = self;
        user.encode(h);
        group.encode(h);
    }
}

impl StableEncode for FileAction {
    fn encode(&self, h: &mut KeyHasher) {
        match self {
            FileAction::Copy(c) => {
                h.u8(1);
                c.encode(h)
            }
            FileAction::Mkdir { path, mode, make_parents, owner } => {
                h.u8(2);
                path.encode(h);
                mode.encode(h);
                make_parents.encode(h);
                owner.encode(h);
            }
            FileAction::Mkfile { path, mode, data, owner } => {
                h.u8(3);
                path.encode(h);
                mode.encode(h);
                h.bytes(data);
                owner.encode(h);
            }
            FileAction::Rm { path, allow_not_found, allow_wildcard } => {
                h.u8(4);
                path.encode(h);
                allow_not_found.encode(h);
                allow_wildcard.encode(h);
            }
        }
    }
}

impl StableEncode for CopyAction {
    fn encode(&self, h: &mut KeyHasher) {
        let CopyAction {
            input,
            sources,
            dest,
            owner,
            mode,
            follow_symlinks,
            dir_contents_only,
            allow_wildcard,
            allow_empty_wildcard,
            create_dest_path,
            unpack_archives,
            parents,
            include,
            exclude,
        } = self;
        input.encode(h);
        sources.encode(h);
        dest.encode(h);
        owner.encode(h);
        mode.encode(h);
        follow_symlinks.encode(h);
        dir_contents_only.encode(h);
        allow_wildcard.encode(h);
        allow_empty_wildcard.encode(h);
        create_dest_path.encode(h);
        unpack_archives.encode(h);
        parents.encode(h);
        include.encode(h);
        exclude.encode(h);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_is_stable_and_sensitive() {
        let op = Op::Exec(ExecOp {
            env: vec!["PATH=/bin".into()],
            ..ExecOp::new(vec!["/bin/sh".into(), "-c".into(), "make".into()])
        });
        let a = CacheKey::of("op", &op);
        assert_eq!(a, CacheKey::of("op", &op.clone()));
        let mut other = op.clone();
        if let Op::Exec(e) = &mut other {
            e.env.push("X=1".into());
        }
        assert_ne!(a, CacheKey::of("op", &other));
        // Length prefixes keep ["ab","c"] and ["a","bc"] apart.
        assert_ne!(
            CacheKey::of("t", &vec!["ab".to_string(), "c".to_string()]),
            CacheKey::of("t", &vec!["a".to_string(), "bc".to_string()])
        );
    }

    /// Every op, mount kind and file action with non-default fields, so that any
    /// change to an encoded byte (a field dropped, reordered or re-tagged) fails.
    fn representative_graph() -> Vec<Op> {
        let owner = Some(Owner { user: "1000".into(), group: Some("staff".into()) });
        let mut copy = CopyAction::new(1, vec!["src/*.rs".into(), "Cargo.toml".into()], "/app/");
        copy.owner = owner.clone();
        copy.mode = Some("0755".into());
        copy.allow_wildcard = true;
        copy.parents = true;
        copy.include = vec!["*.rs".into()];
        copy.exclude = vec!["target".into()];
        vec![
            Op::Source(SourceOp::Scratch),
            Op::Source(SourceOp::Image {
                reference: "docker.io/library/alpine:3.20".into(),
                platform: Some("linux/amd64".into()),
            }),
            Op::Source(SourceOp::Local { name: "context".into(), exclude: vec!["*.tmp".into()] }),
            Op::Source(SourceOp::Http {
                url: "https://example.com/a.tar.gz".into(),
                checksum: Some("sha256:00".into()),
                filename: None,
            }),
            Op::Exec(ExecOp {
                args: vec!["/bin/sh".into(), "-c".into(), "make".into()],
                env: vec!["PATH=/bin".into(), "A=1".into()],
                cwd: "/src".into(),
                user: "1000:1000".into(),
                network: NetworkMode::Host,
                security: SecurityMode::Insecure,
                mounts: vec![
                    Mount {
                        target: "/ctx".into(),
                        kind: MountKind::Bind { input: 1, source: "/sub".into(), readonly: true },
                    },
                    Mount {
                        target: "/root/.cache".into(),
                        kind: MountKind::Cache {
                            id: "go".into(),
                            sharing: CacheSharing::Locked,
                            from: Some(2),
                            source: "/seed".into(),
                            mode: Some(0o700),
                            uid: Some(1),
                            gid: None,
                            readonly: false,
                        },
                    },
                    Mount { target: "/tmp".into(), kind: MountKind::Tmpfs { size: Some(1 << 20) } },
                    Mount {
                        target: "/run/secrets/tok".into(),
                        kind: MountKind::Secret {
                            id: "tok".into(),
                            env: Some("TOKEN".into()),
                            required: true,
                            mode: 0o400,
                            uid: 0,
                            gid: 0,
                        },
                    },
                    Mount {
                        target: "/run/ssh".into(),
                        kind: MountKind::Ssh { id: "default".into(), required: false, mode: 0o600, uid: 0, gid: 0 },
                    },
                ],
                // Without these the key is the one pinned before they existed.
                extra_hosts: vec![],
                ulimits: vec![],
                shm_size: None,
            }),
            Op::File(FileOp {
                actions: vec![
                    FileAction::Copy(copy),
                    FileAction::Mkdir { path: "/a/b".into(), mode: 0o755, make_parents: true, owner: owner.clone() },
                    FileAction::Mkfile { path: "/a/f".into(), mode: 0o644, data: b"hi".to_vec(), owner },
                    FileAction::Rm { path: "/a/*.o".into(), allow_not_found: true, allow_wildcard: true },
                ],
            }),
            Op::Merge,
        ]
    }

    /// Pinned before the `StableEncode` impls were made to destructure: keys and
    /// image digests of existing caches depend on these exact bytes. Re-pinned once
    /// when ssh mounts gained mode/uid/gid: no step with an ssh mount could run
    /// before, so no cache held a key that changed.
    #[test]
    fn representative_graph_key_is_pinned() {
        let ops = representative_graph();
        assert_eq!(
            CacheKey::of("op", &ops).to_hex(),
            "eb9e9e47b16c1e1bcfdebdc8db50957e7477fbbd06b896f38efbef20861409a3"
        );
    }

    fn with_run_flags(ops: &mut [Op], f: impl Fn(&mut ExecOp)) {
        for op in ops {
            if let Op::Exec(e) = op {
                f(e)
            }
        }
    }

    /// `--add-host`, `--ulimit` and `--shm-size` count in the key of every exec, as
    /// in BuildKit's `Meta`; each value (and which flag carries it) makes its own key.
    #[test]
    fn run_flags_count_in_the_key() {
        let host = |ip: &str| HostIp { host: "a".into(), ip: ip.parse().unwrap() };
        let key = |f: &dyn Fn(&mut ExecOp)| {
            let mut ops = representative_graph();
            with_run_flags(&mut ops, f);
            CacheKey::of("op", &ops)
        };
        let pinned = key(&|_| {});
        let keys = [
            pinned,
            key(&|e| e.extra_hosts = vec![host("10.0.0.1")]),
            key(&|e| e.extra_hosts = vec![host("10.0.0.2")]),
            key(&|e| e.extra_hosts = vec![host("10.0.0.1"), host("10.0.0.2")]),
            key(&|e| e.ulimits = vec![Ulimit { name: "nofile".into(), soft: 1024, hard: 2048 }]),
            key(&|e| e.ulimits = vec![Ulimit { name: "nofile".into(), soft: 1024, hard: 4096 }]),
            key(&|e| e.shm_size = Some(64 << 20)),
            key(&|e| e.shm_size = Some(128 << 20)),
        ];
        for (i, a) in keys.iter().enumerate() {
            for b in &keys[i + 1..] {
                assert_ne!(a, b, "two different run flags gave one key");
            }
        }
        assert_eq!(keys[1], key(&|e| e.extra_hosts = vec![host("10.0.0.1")]), "not stable");
        // Unset, the key is the one pinned above: caches made before still match.
        assert_eq!(pinned.to_hex(), "eb9e9e47b16c1e1bcfdebdc8db50957e7477fbbd06b896f38efbef20861409a3");
    }
}
