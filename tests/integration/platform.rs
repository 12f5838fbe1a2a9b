//! `builder build --platform linux/amd64,linux/arm64`: bases for two platforms made
//! offline (the machine's busybox-static and Debian's arm64 one, downloaded by
//! scripts/test.sh into target/debs/), combined into one index in a real registry;
//! a cross-compiling Dockerfile built for both, its arm64 RUN through QEMU when
//! binfmt_misc has it; the index pushed and read back with skopeo; cached and
//! one-file-changed rebuilds; and the platform errors.

use crate::registry::Registry;
use crate::util::{Env, busybox_tar, env, testdata};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The arm64 busybox rootfs tarball, from the busybox-static arm64 package.
pub(crate) fn arm64_busybox(test: &str, work: &Path) -> Option<PathBuf> {
    let debs = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/debs");
    let deb = std::fs::read_dir(&debs).ok().and_then(|entries| {
        entries.flatten().map(|e| e.path()).find(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            name.starts_with("busybox-static_") && name.ends_with("_arm64.deb")
        })
    });
    let Some(deb) = deb else {
        eprintln!(
            "SKIPPED {test}: no busybox-static arm64 package in {} (scripts/test.sh downloads it)",
            debs.display()
        );
        return None;
    };
    let root = work.join("arm64-deb");
    let status = Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root).status().unwrap();
    assert!(status.success(), "dpkg-deb -x {}", deb.display());
    let tar = work.join("busybox-arm64.tar");
    let status = Command::new("sh")
        .arg(testdata("make-busybox-rootfs.sh"))
        .arg(&tar)
        .env("BUSYBOX", root.join("bin/busybox"))
        .env("BUSYBOX_LIST", "/bin/busybox")
        .status()
        .unwrap();
    assert!(status.success(), "making the arm64 rootfs");
    Some(tar)
}

/// Whether `builder doctor` lists an emulator for `platform`.
fn emulated(env: &Env, platform: &str) -> bool {
    env.ok(&["doctor"]).lines().any(|l| l.starts_with(&format!("emulator: {platform} ")))
}

/// Each step of a plain progress log (`#N NAME`) and whether it was CACHED.
fn steps(log: &str) -> Vec<(String, bool)> {
    let mut names: BTreeMap<String, String> = BTreeMap::new();
    let mut cached = Vec::new();
    for line in log.lines() {
        let Some((id, rest)) = line.split_once(' ') else { continue };
        if !id.starts_with('#') {
            continue;
        }
        if rest.starts_with("CACHED") {
            cached.push(id.to_string());
        } else if rest.starts_with('[') && !names.contains_key(id) {
            names.insert(id.to_string(), rest.to_string());
        }
    }
    names.into_iter().map(|(id, name)| (name, cached.contains(&id))).collect()
}

/// The RUN and COPY steps that ran (were not CACHED).
fn ran(log: &str) -> Vec<String> {
    let mut ran: Vec<String> = steps(log)
        .into_iter()
        .filter(|(name, cached)| !cached && (name.contains("] RUN ") || name.contains("] COPY ")))
        .map(|(name, _)| name)
        .collect();
    ran.sort();
    ran
}

fn skopeo(args: &[&str]) -> serde_json::Value {
    let out = Command::new("skopeo").args(args).output().unwrap();
    assert!(out.status.success(), "skopeo {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn read(path: PathBuf) -> String {
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).trim().to_string()
}

#[test]
fn a_two_platform_build_makes_an_index_and_shares_the_build_stage() {
    let test = "a_two_platform_build_makes_an_index_and_shares_the_build_stage";
    let Some(env) = env(test) else { return };
    let Some(registry) = Registry::start(test, None) else { return };
    let Some(arm64_tar) = arm64_busybox(test, env.work.path()) else { return };
    let host = image_spec::host_platform();
    if host.architecture != "amd64" {
        eprintln!("SKIPPED {test}: written for an amd64 machine (this one is {host})");
        return;
    }
    let amd64_tar = busybox_tar().to_str().unwrap();
    env.ok(&["import", "--platform", "linux/amd64", amd64_tar, "bb-amd64:1"]);
    env.ok(&["import", "--platform", "linux/arm64", arm64_tar.to_str().unwrap(), "bb-arm64:1"]);

    // The two bases as one index in the registry.
    let base = format!("{}/it/busybox:multi", registry.host());
    let ctx = env.context("base", &[("Dockerfile", "ARG TARGETARCH\nFROM bb-$TARGETARCH:1\n")]);
    env.build_ok(&ctx, &["--platform", "linux/amd64,linux/arm64", "--push", "-t", &base]);
    let index = skopeo(&["inspect", "--raw", "--tls-verify=false", &format!("docker://{base}")]);
    let archs: Vec<&str> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["platform"]["architecture"].as_str().unwrap())
        .collect();
    assert_eq!(archs, ["amd64", "arm64"], "{index}");

    let emulation = emulated(&env, "linux/arm64");
    if !emulation {
        eprintln!("SKIPPED {test} (the emulated RUN only): no binfmt_misc handler for linux/arm64 with the F flag");
    }
    let target_run = if emulation { "RUN uname -m > /arch\n" } else { "" };
    let dockerfile = format!(
        "FROM --platform=$BUILDPLATFORM {base} AS build\n\
         ARG BUILDARCH\n\
         RUN echo \"$BUILDARCH\" > /buildarch\n\
         ARG TARGETARCH\n\
         RUN echo \"$TARGETARCH\" > /targetarch\n\
         FROM {base}\n\
         {target_run}\
         COPY --from=build /buildarch /targetarch /\n\
         COPY hello.txt /\n"
    );
    // A fresh store: the base is pulled from the index, once per platform.
    let fresh = crate::util::env(test).unwrap();
    let ctx = fresh.context("app", &[("Dockerfile", &dockerfile), ("hello.txt", "hello\n")]);
    let app = format!("{}/it/app:1", registry.host());
    let out = fresh.work.path().join("out");
    let iid = fresh.work.path().join("iid");
    let dest = format!("type=local,dest={}", out.display());
    let args = ["--platform", "linux/amd64,linux/arm64", "-t", &app, "--push", "-o", &dest, "--iidfile"];
    let mut first = args.to_vec();
    first.push(iid.to_str().unwrap());
    let (ok, _, log) = fresh.build(&ctx, &first);
    assert!(ok, "{log}");
    // The step on the build platform that no target arg reaches ran once; the one
    // that reads TARGETARCH once per target, on the build platform.
    let steps = steps(&log);
    let named = |text: &str| steps.iter().filter(|(n, _)| n.contains(text)).map(|(n, _)| n.clone()).collect::<Vec<_>>();
    assert_eq!(named("> /buildarch"), ["[linux/amd64 build 2/3] RUN echo \"amd64\" > /buildarch"], "{log}");
    assert_eq!(named("> /targetarch").len(), 2, "{log}");
    for (platform, arch, uname) in [("linux_amd64", "amd64", "x86_64"), ("linux_arm64", "arm64", "aarch64")] {
        assert_eq!(read(out.join(platform).join("targetarch")), arch);
        assert_eq!(read(out.join(platform).join("buildarch")), "amd64");
        assert_eq!(read(out.join(platform).join("hello.txt")), "hello");
        if emulation {
            assert_eq!(read(out.join(platform).join("arch")), uname, "{platform}");
        }
    }

    // The pushed index: two manifests whose configs say amd64 and arm64; --iidfile
    // names it.
    let raw = Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false", &format!("docker://{app}")])
        .output()
        .unwrap();
    assert!(raw.status.success());
    println!("skopeo inspect --raw {app}:\n{}", String::from_utf8_lossy(&raw.stdout));
    assert_eq!(read(iid.clone()), image_spec::Digest::of(&raw.stdout).to_string());
    let index: serde_json::Value = serde_json::from_slice(&raw.stdout).unwrap();
    assert_eq!(index["mediaType"], image_spec::MEDIA_TYPE_OCI_INDEX);
    for (entry, arch) in index["manifests"].as_array().unwrap().iter().zip(["amd64", "arm64"]) {
        let by_digest = format!("docker://{}/it/app@{}", registry.host(), entry["digest"].as_str().unwrap());
        let config = skopeo(&["inspect", "--config", "--tls-verify=false", &by_digest]);
        assert_eq!(config["architecture"], arch);
        assert_eq!(entry["platform"]["architecture"], arch);
    }

    // A cached rebuild of both platforms runs nothing; a changed file re-runs only
    // its COPY, once per platform.
    let (ok, _, log) = fresh.build(&ctx, &args[..args.len() - 1]);
    assert!(ok, "{log}");
    assert_eq!(ran(&log), Vec::<String>::new(), "{log}");
    std::fs::write(ctx.join("hello.txt"), "changed\n").unwrap();
    let (ok, _, log) = fresh.build(&ctx, &args[..args.len() - 1]);
    assert!(ok, "{log}");
    assert_eq!(
        ran(&log),
        ["[linux/amd64 stage-1 3/3] COPY hello.txt /", "[linux/arm64 stage-1 3/3] COPY hello.txt /"]
            .map(|s| if emulation { s.replace("3/3", "4/4") } else { s.to_string() }),
        "{log}"
    );

    // A Docker manifest list on request.
    let list = format!("{}/it/app:docker", registry.host());
    let output = format!("type=registry,name={list},oci-mediatypes=false");
    fresh.build_ok(&ctx, &["--platform", "linux/amd64,linux/arm64", "-o", &output]);
    let raw = skopeo(&["inspect", "--raw", "--tls-verify=false", &format!("docker://{list}")]);
    assert_eq!(raw["mediaType"], "application/vnd.docker.distribution.manifest.list.v2+json", "{raw}");
    for entry in raw["manifests"].as_array().unwrap() {
        assert_eq!(entry["mediaType"], "application/vnd.docker.distribution.manifest.v2+json", "{raw}");
    }

    // One platform as a docker tarball that skopeo reads; several are refused.
    let tarball = fresh.work.path().join("arm64.tar");
    let docker = format!("type=docker,dest={}", tarball.display());
    fresh.build_ok(&ctx, &["--platform", "linux/arm64", "-o", &docker]);
    let inspected = skopeo(&["inspect", &format!("docker-archive:{}", tarball.display())]);
    assert_eq!(inspected["Architecture"], "arm64");
    let (ok, _, log) = fresh.build(&ctx, &["--platform", "linux/amd64,linux/arm64", "-o", &docker]);
    assert!(!ok && log.contains("type=docker holds one platform"), "{log}");

    // `tag` and `push` of a multi-platform name carry the index.
    let copy = format!("{}/it/copy:1", registry.host());
    fresh.ok(&["tag", &app, &copy]);
    fresh.ok(&["push", &copy]);
    let pushed = skopeo(&["inspect", "--raw", "--tls-verify=false", &format!("docker://{copy}")]);
    assert_eq!(pushed["manifests"].as_array().map(Vec::len), Some(2), "{pushed}");

    // The store's index: `images` lists both platforms, `run --platform` picks one.
    let images = fresh.ok(&["images"]);
    assert!(images.contains("linux/amd64") && images.contains("linux/arm64"), "{images}");
    if emulation {
        let out = fresh.ok(&["run", "--rm", "--platform", "linux/arm64", &app, "cat", "/arch"]);
        assert_eq!(out.trim(), "aarch64");
    }
}

#[test]
fn wrong_platforms_are_errors_that_name_what_is_missing() {
    let test = "wrong_platforms_are_errors_that_name_what_is_missing";
    let Some(env) = env(test) else { return };
    let tar = busybox_tar().to_str().unwrap();
    env.ok(&["import", "--platform", "linux/amd64", tar, "only-amd64:1"]);

    // A base without the platform: the image, the platform and what it has.
    let ctx = env.context("no-arm64", &[("Dockerfile", "FROM only-amd64:1\nRUN true\n")]);
    let (ok, _, log) = env.build(&ctx, &["--platform", "linux/arm64"]);
    assert!(!ok, "{log}");
    assert!(
        log.contains("only-amd64:1 has no image for platform linux/arm64 (it has: linux/amd64)"),
        "the error names the image, the platform and the ones it has:\n{log}"
    );

    // A foreign RUN without an emulator: the platform and how to get one. The base
    // claims a platform whose emulator is not registered here.
    let Some(missing) =
        ["linux/s390x", "linux/riscv64", "linux/ppc64le", "linux/mips64le"].into_iter().find(|p| !emulated(&env, p))
    else {
        eprintln!("SKIPPED {test} (no emulator): every candidate platform has an emulator here");
        return;
    };
    env.ok(&["import", "--platform", missing, tar, "claims-foreign:1"]);
    let ctx = env.context("no-emulator", &[("Dockerfile", "FROM claims-foreign:1\nRUN true\n")]);
    let (ok, _, log) = env.build(&ctx, &["--platform", missing]);
    assert!(!ok, "{log}");
    assert!(
        log.contains(&format!("cannot run steps for {missing}")) && log.contains("qemu-user-static"),
        "the error names the platform and the fix:\n{log}"
    );
}

#[test]
fn multi_platform_results_are_reproducible_cached_for_every_platform_and_a_tar_has_a_directory_per_platform() {
    let test =
        "multi_platform_results_are_reproducible_cached_for_every_platform_and_a_tar_has_a_directory_per_platform";
    let Some(first) = env(test) else { return };
    let Some(arm64_tar) = arm64_busybox(test, first.work.path()) else { return };
    let dockerfile = "ARG TARGETARCH\nFROM bb-$TARGETARCH:1\nCOPY hello.txt /\n";
    let build = |env: &Env, extra: &[&str]| {
        for (platform, tar, name) in [
            ("linux/amd64", busybox_tar().to_path_buf(), "bb-amd64:1"),
            ("linux/arm64", arm64_tar.clone(), "bb-arm64:1"),
        ] {
            let out = env
                .cmd(&["import", "--platform", platform, tar.to_str().unwrap(), name])
                .env("SOURCE_DATE_EPOCH", "0")
                .output()
                .unwrap();
            assert!(out.status.success());
        }
        let ctx = env.context("repro", &[("Dockerfile", dockerfile), ("hello.txt", "hello\n")]);
        let iid = env.work.path().join("iid");
        let mut args = vec![
            "build",
            "--progress=plain",
            "--platform",
            "linux/amd64,linux/arm64",
            "--iidfile",
            iid.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        args.push(ctx.to_str().unwrap());
        let out = env.cmd(&args).env("SOURCE_DATE_EPOCH", "0").output().unwrap();
        let log = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{log}");
        (read(iid), log)
    };
    let tar = first.work.path().join("platforms.tar");
    let dest = format!("type=tar,dest={}", tar.display());
    let cache = first.work.path().join("cache");
    let cache_to = format!("type=local,dest={},mode=min", cache.display());
    let oci = first.work.path().join("oci.tar");
    let oci_dest = format!("type=oci,dest={}", oci.display());
    let (digest, log) = build(&first, &["-o", &dest, "-o", "type=image", "-o", &oci_dest, "--cache-to", &cache_to]);
    assert_eq!(ran(&log).len(), 2, "{log}");
    // The OCI layout names the index; skopeo picks each platform from it.
    let oci_ref = format!("oci-archive:{}", oci.display());
    for arch in ["amd64", "arm64"] {
        assert_eq!(skopeo(&["inspect", "--override-arch", arch, &oci_ref])["Architecture"], arch);
    }
    // Another store: the same index, and the min-mode cache holds both platforms'
    // records, so nothing runs.
    let second = env(test).unwrap();
    let cache_from = format!("type=local,src={}", cache.display());
    let (again, log) = build(&second, &["--cache-from", &cache_from]);
    assert_eq!(again, digest, "the same index from another store with SOURCE_DATE_EPOCH");
    assert_eq!(ran(&log), Vec::<String>::new(), "{log}");

    let listing = Command::new("tar").arg("-tvf").arg(&tar).output().unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout);
    for platform in ["linux_amd64", "linux_arm64"] {
        assert!(listing.lines().any(|l| l.ends_with(&format!("{platform}/hello.txt"))), "{listing}");
        assert!(listing.lines().any(|l| l.ends_with(&format!("{platform}/bin/busybox"))), "{listing}");
    }
    assert!(listing.lines().all(|l| l.contains("1970-01-01")), "dated SOURCE_DATE_EPOCH:\n{listing}");
}
