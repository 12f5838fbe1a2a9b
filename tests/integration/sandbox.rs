//! A `RUN` step and a `builder run` container are security boundaries (issue 13): host
//! devices, the host network, dangerous syscalls, capabilities, resource exhaustion,
//! relative bind sources. Each test also shows that the check can fail: the same probe
//! succeeds where the user explicitly allowed it.

use crate::util::{Env, env};
use std::io::{Read as _, Write as _};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Builds a Dockerfile (no context files) and returns (success, what the steps printed
/// or, if the build failed before any step printed, every line of its output).
fn build(env: &Env, name: &str, dockerfile: &str, extra: &[&str]) -> (bool, String) {
    let ctx = env.context(name, &[("Dockerfile", dockerfile)]);
    let (ok, stdout, stderr) = env.build(&ctx, extra);
    (ok, step_output(&format!("{stdout}{stderr}")))
}

/// The processes' own lines of a plain progress log (`#N SECONDS text`), without the
/// step titles that repeat the command (and every word a probe prints); the error
/// lines after them, if any.
fn step_output(log: &str) -> String {
    let is_output = |l: &&str| {
        let mut words = l.split_whitespace();
        words.next().is_some_and(|w| w.starts_with('#')) && words.next().is_some_and(|t| t.parse::<f64>().is_ok())
    };
    let mut out: Vec<&str> = log.lines().filter(is_output).collect();
    out.extend(log.lines().filter(|l| l.starts_with("error") || l.starts_with("ERROR") || l.starts_with("Error")));
    out.join("\n") + "\n"
}

fn has(tool: &str) -> bool {
    Command::new("sh").args(["-c", &format!("command -v {tool}")]).output().is_ok_and(|o| o.status.success())
}

/// A loop device over a file with a known marker, detached on drop.
struct Loop {
    device: String,
    file: PathBuf,
}

const MARKER: &str = "host-secret-marker-0123456789";

impl Loop {
    fn new(dir: &Path) -> Option<Loop> {
        let file = dir.join("disk.img");
        let mut content = MARKER.as_bytes().to_vec();
        content.resize(1 << 20, 0);
        std::fs::write(&file, &content).unwrap();
        let out = Command::new("losetup").args(["-f", "--show"]).arg(&file).output().ok()?;
        if !out.status.success() {
            eprintln!("losetup failed: {}", String::from_utf8_lossy(&out.stderr));
            return None;
        }
        Some(Loop { device: String::from_utf8(out.stdout).unwrap().trim().to_string(), file })
    }

    fn minor(&self) -> u32 {
        self.device.trim_start_matches("/dev/loop").parse().unwrap()
    }

    fn unchanged(&self) -> bool {
        let content = std::fs::read(&self.file).unwrap();
        content.starts_with(MARKER.as_bytes()) && content[MARKER.len()..].iter().all(|b| *b == 0)
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.device]).status();
    }
}

#[test]
fn a_step_cannot_open_a_host_block_device_it_makes() {
    let Some(env) = env("a_step_cannot_open_a_host_block_device_it_makes") else { return };
    let env = env.with_busybox();
    let Some(dev) = Loop::new(env.work.path()) else {
        eprintln!("SKIPPED a_step_cannot_open_a_host_block_device_it_makes: no loop device (losetup)");
        return;
    };
    let probe = format!(
        "(mknod /tmp/b b 7 {minor} 2>&1 || echo mknod-refused); \
         (head -c 29 /tmp/b 2>&1 || echo read-refused); \
         (test -b /tmp/b && printf X | dd of=/tmp/b bs=1 seek=100 conv=notrunc 2>&1 || echo write-refused)",
        minor = dev.minor()
    );
    let (ok, out) = build(&env, "mknod", &format!("FROM busybox\nRUN {probe}\n"), &[]);
    assert!(ok, "{out}");
    assert!(out.contains("mknod-refused") && out.contains("Operation not permitted"), "{out}");
    assert!(out.contains("read-refused") && out.contains("write-refused"), "{out}");
    assert!(!out.contains(MARKER), "the step read the host's device:\n{out}");
    assert!(dev.unchanged(), "the step wrote into the host's device");

    // The probe can see the device where the build allows it: it is a real check.
    let df = format!("FROM busybox\nRUN --security=insecure {probe}\n");
    let (ok, out) = build(&env, "mknod-insecure", &df, &["--allow", "security.insecure", "--no-cache"]);
    assert!(ok, "{out}");
    assert!(out.contains(MARKER), "{out}");
    assert!(!dev.unchanged());
}

/// A base image whose layer carries a world-writable block device node (7:minor).
fn import_with_device_node(env: &Env, minor: u32) {
    let mut builder = tar::Builder::new(Vec::new());
    let mut original = tar::Archive::new(std::fs::File::open(crate::util::busybox_tar()).unwrap());
    for entry in original.entries().unwrap() {
        let mut entry = entry.unwrap();
        let header = entry.header().clone();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        builder.append(&header, data.as_slice()).unwrap();
    }
    let mut node = tar::Header::new_ustar();
    node.set_entry_type(tar::EntryType::Block);
    node.set_path("node").unwrap();
    node.set_mode(0o666);
    node.set_device_major(7).unwrap();
    node.set_device_minor(minor).unwrap();
    node.set_size(0);
    node.set_cksum();
    builder.append(&node, std::io::empty()).unwrap();
    let tar = env.work.path().join("devbox.tar");
    std::fs::write(&tar, builder.into_inner().unwrap()).unwrap();
    env.ok(&["import", tar.to_str().unwrap(), "devbox:latest"]);
}

#[test]
fn a_device_node_in_a_base_layer_cannot_be_opened() {
    let Some(env) = env("a_device_node_in_a_base_layer_cannot_be_opened") else { return };
    let Some(dev) = Loop::new(env.work.path()) else {
        eprintln!("SKIPPED a_device_node_in_a_base_layer_cannot_be_opened: no loop device (losetup)");
        return;
    };
    import_with_device_node(&env, dev.minor());
    let probe = "ls -l /node; (head -c 29 /node 2>&1 || echo read-refused); \
                 (printf X | dd of=/node bs=1 seek=100 conv=notrunc 2>&1 || echo write-refused)";
    for user in ["nobody", "root"] {
        let df = format!("FROM devbox\nUSER {user}\nRUN {probe}\n");
        let (ok, out) = build(&env, &format!("node-{user}"), &df, &[]);
        assert!(ok, "{out}");
        assert!(out.contains("brw-rw-rw-"), "the node is data and stays in the layer:\n{out}");
        assert!(out.contains("read-refused") && out.contains("write-refused"), "{user}:\n{out}");
        assert!(!out.contains(MARKER), "{user} read the host's device:\n{out}");
    }
    let out = env.run(&["run", "--rm", "devbox", "sh", "-c", probe]);
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("read-refused") && !text.contains(MARKER), "builder run:\n{text}");
    assert!(dev.unchanged());
}

#[test]
fn host_device_nodes_are_absent_and_kmsg_is_not_writable() {
    let Some(env) = env("host_device_nodes_are_absent_and_kmsg_is_not_writable") else { return };
    let env = env.with_busybox();
    let probe = "ls /dev | tr '\\n' ' '; echo; \
                 for n in kvm fuse loop-control kmsg mem sda vda; do [ -e /dev/$n ] && echo present-$n; done; \
                 (mknod /tmp/kmsg c 1 11 && echo builder-probe > /tmp/kmsg && echo kmsg-written) 2>&1 || echo kmsg-refused";
    let (ok, out) = build(&env, "devs", &format!("FROM busybox\nRUN {probe}\n"), &[]);
    assert!(ok, "{out}");
    for node in ["kvm", "fuse", "loop-control", "kmsg", "mem", "sda", "vda"] {
        assert!(!out.contains(&format!("present-{node}")), "{out}");
    }
    assert!(out.contains("kmsg-refused") && !out.contains("kmsg-written"), "{out}");
}

/// A tiny HTTP server with basic auth on the host's loopback; counts connections.
struct HostService {
    port: u16,
    connections: Arc<AtomicUsize>,
}

impl HostService {
    fn start() -> HostService {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(AtomicUsize::new(0));
        let count = connections.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                count.fetch_add(1, Ordering::SeqCst);
                let mut stream = stream;
                let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                let mut buf = [0u8; 1024];
                let _ = stream.read(&mut buf);
                let _ = stream.write_all(b"HTTP/1.0 200 OK\r\n\r\nhost-only-service\n");
            }
        });
        HostService { port, connections }
    }
}

/// A host process talking to the service, with a password a sniffer would want.
fn talk(port: u16) {
    if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
        let _ = s.write_all(b"GET / HTTP/1.0\r\nAuthorization: Basic aG9zdDpzZWNyZXQ=\r\n\r\n");
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
    }
}

#[test]
fn a_step_cannot_sniff_or_reach_the_hosts_loopback() {
    let Some(env) = env("a_step_cannot_sniff_or_reach_the_hosts_loopback") else { return };
    let env = env.with_busybox();
    let service = HostService::start();
    let port = service.port;
    // The host keeps talking to its service while the step runs.
    let stop = Arc::new(AtomicUsize::new(0));
    let talker = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            while stop.load(Ordering::SeqCst) == 0 {
                talk(port);
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    let probe = format!(
        "(arping -c 1 -w 1 -I lo 127.0.0.1 2>&1 || true) | head -3; \
         for a in 127.0.0.1 10.0.2.2; do \
           (printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 $a {port} 2>&1 || echo refused-$a); done; \
         cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' ' | tr '\\n' ' '"
    );
    let (ok, out) = build(&env, "sniff", &format!("FROM busybox\nRUN {probe}\n"), &[]);
    stop.store(1, Ordering::SeqCst);
    talker.join().unwrap();
    assert!(ok, "{out}");
    assert!(out.contains("Operation not permitted"), "the raw socket opened:\n{out}");
    assert!(!out.contains("aG9zdDpzZWNyZXQ") && !out.contains("host-only-service"), "{out}");
    assert!(out.contains("refused-127.0.0.1") && out.contains("refused-10.0.2.2"), "{out}");
    assert!(!out.contains("eth0"), "the step saw the host's interfaces:\n{out}");
    assert!(service.connections.load(Ordering::SeqCst) > 0, "the host's own talker never got through");

    // --network=host is refused without the entitlement, and with it the step does
    // reach the host's service: the check above is a real one.
    let df = format!("FROM busybox\nRUN printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 127.0.0.1 {port}\n");
    let (ok, out) = build(&env, "host-net", &df, &["--network=host"]);
    assert!(!ok && out.contains("network.host"), "{out}");
    let df_run_host = df.replace("RUN ", "RUN --network=host ");
    let (ok, out) = build(&env, "run-host-net", &df_run_host, &[]);
    assert!(!ok && out.contains("--allow network.host"), "{out}");
    let (ok, out) = build(&env, "host-net-allowed", &df, &["--network=host", "--allow", "network.host"]);
    assert!(ok && out.contains("host-only-service"), "{out}");
    let (ok, out) = build(&env, "run-host-net-allowed", &df_run_host, &["--allow=network.host"]);
    assert!(ok && out.contains("host-only-service"), "{out}");
}

/// A network namespace of the test's own (held by the HTTP server it runs) behind a
/// veth pair on a private /30 that exists only on this machine; gone with the server.
struct PeerHost {
    server: std::process::Child,
    veth: String,
    address: &'static str,
}

impl PeerHost {
    fn start(dir: &Path) -> Option<PeerHost> {
        if !has("ip") || !has("nsenter") || !has("unshare") {
            return None;
        }
        let www = dir.join("www");
        std::fs::create_dir_all(&www).unwrap();
        std::fs::write(www.join("hello.txt"), "reached-through-nat\n").unwrap();
        // unshare execs the server: its pid is the namespace's holder.
        let server = Command::new("unshare")
            .args(["-n", "busybox", "httpd", "-f", "-p", "8080", "-h"])
            .arg(&www)
            .spawn()
            .ok()?;
        let pid = server.id();
        let (veth, peer) = (format!("btv{}", pid % 100_000), format!("btp{}", pid % 100_000));
        let mut host = PeerHost { server, veth: veth.clone(), address: "172.31.231.2" };
        let sh = |cmd: String| Command::new("sh").args(["-c", &cmd]).status().is_ok_and(|s| s.success());
        // Until unshare has made the namespace (then it execs the server).
        let own = std::fs::read_link("/proc/self/ns/net").unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while std::fs::read_link(format!("/proc/{pid}/ns/net")).is_ok_and(|ns| ns == own) {
            if std::time::Instant::now() > deadline {
                host.stop();
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let made = sh(format!("ip link add {veth} type veth peer name {peer}"))
            && sh(format!("ip link set {peer} netns {pid}"))
            && sh(format!("ip addr add 172.31.231.1/30 dev {veth} && ip link set {veth} up"))
            && sh(format!(
                "nsenter -t {pid} -n sh -c 'ip addr add 172.31.231.2/30 dev {peer} && ip link set {peer} up && ip link set lo up'"
            ));
        if !made {
            host.stop();
            return None;
        }
        Some(host)
    }

    fn stop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
        // Removing the namespace removed the pair; this is for a pair never moved.
        let _ = Command::new("ip").args(["link", "del", &self.veth]).stderr(std::process::Stdio::null()).status();
    }
}

impl Drop for PeerHost {
    fn drop(&mut self) {
        self.stop();
    }
}

#[test]
fn a_step_reaches_the_outside_through_the_nat() {
    let Some(env) = env("a_step_reaches_the_outside_through_the_nat") else { return };
    if !has("slirp4netns") {
        eprintln!("SKIPPED a_step_reaches_the_outside_through_the_nat: slirp4netns is not installed");
        return;
    }
    let env = env.with_busybox();
    let Some(peer) = PeerHost::start(env.work.path()) else {
        eprintln!("SKIPPED a_step_reaches_the_outside_through_the_nat: cannot make a veth pair and netns (iproute2)");
        return;
    };
    let df = format!(
        "FROM busybox\nRUN grep nameserver /etc/resolv.conf && \
         printf 'GET /hello.txt HTTP/1.0\\r\\n\\r\\n' | nc -w 5 {} 8080\n",
        peer.address
    );
    let (ok, out) = build(&env, "nat", &df, &[]);
    assert!(ok, "{out}");
    assert!(out.contains("reached-through-nat"), "{out}");
    assert!(out.contains("nameserver 10.0.2.3"), "{out}");
    // --network=none has no way out.
    let (ok, out) = build(&env, "nat-none", &df.replace("RUN ", "RUN --network=none "), &[]);
    assert!(!ok && !out.contains("reached-through-nat"), "{out}");
    // And builder run gets the same private network by default.
    let out = env.run(&[
        "run",
        "--rm",
        "busybox",
        "sh",
        "-c",
        &format!("echo | nc -w 5 {} 8080 >/dev/null && echo up", peer.address),
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "up\n", "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn a_step_runs_under_seccomp_with_the_expected_capabilities() {
    let Some(env) = env("a_step_runs_under_seccomp_with_the_expected_capabilities") else { return };
    let env = env.with_busybox();
    let probe = "grep -E '^(Seccomp|CapEff|CapBnd|NoNewPrivs):' /proc/self/status; \
                 unshare -U true 2>&1 || echo unshare-refused; \
                 unshare -m true 2>&1 || echo unshare-m-refused";
    let (ok, out) = build(&env, "seccomp", &format!("FROM busybox\nRUN {probe}\n"), &[]);
    assert!(ok, "{out}");
    assert!(out.contains("Seccomp:\t2"), "{out}");
    // Docker's default set less NET_RAW (13) and MKNOD (27).
    assert!(out.contains("CapEff:\t00000000a00405fb") && out.contains("CapBnd:\t00000000a00405fb"), "{out}");
    assert!(out.contains("NoNewPrivs:\t1"), "{out}");
    assert!(out.contains("unshare-refused") && out.contains("unshare-m-refused"), "{out}");
    assert!(out.contains("Operation not permitted"), "{out}");
    // --security=insecure (allowed) lifts both: the probe tells the difference.
    let df = format!("FROM busybox\nRUN --security=insecure {probe}\n");
    let (ok, out) = build(&env, "seccomp-insecure", &df, &["--allow", "security.insecure"]);
    assert!(ok && out.contains("Seccomp:\t0") && !out.contains("unshare-m-refused"), "{out}");
    let (ok, out) = build(&env, "seccomp-insecure-refused", &df, &[]);
    assert!(!ok && out.contains("security.insecure"), "{out}");
}

/// keyctl(2) is refused: the host's `keyctl` with the libraries it needs, copied into
/// the build context.
#[test]
fn keyctl_is_refused_in_a_step() {
    let Some(env) = env("keyctl_is_refused_in_a_step") else { return };
    if !has("keyctl") || !has("ldd") {
        eprintln!("SKIPPED keyctl_is_refused_in_a_step: keyctl (keyutils) is not installed");
        return;
    }
    let env = env.with_busybox();
    let ctx = env.context("keyctl", &[]);
    let keyctl = String::from_utf8(Command::new("sh").args(["-c", "command -v keyctl"]).output().unwrap().stdout)
        .unwrap()
        .trim()
        .to_string();
    let ldd = String::from_utf8(Command::new("ldd").arg(&keyctl).output().unwrap().stdout).unwrap();
    let mut files = vec![PathBuf::from(&keyctl)];
    files.extend(ldd.split_whitespace().filter(|w| w.starts_with('/')).map(PathBuf::from));
    for file in &files {
        let dest = ctx.join("root").join(file.strip_prefix("/").unwrap());
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::copy(std::fs::canonicalize(file).unwrap(), &dest).unwrap();
    }
    let df = "FROM busybox\nCOPY root/ /\nRUN keyctl add user k v @s 2>&1; keyctl show 2>&1; echo done\n";
    std::fs::write(ctx.join("Dockerfile"), df).unwrap();
    let (ok, stdout, stderr) = env.build(&ctx, &[]);
    let out = format!("{stdout}{stderr}");
    assert!(ok && out.contains("done"), "{out}");
    assert!(out.contains("Operation not permitted"), "{out}");
}

#[test]
fn a_fork_bomb_is_bounded_and_leaves_nothing_behind() {
    let Some(env) = env("a_fork_bomb_is_bounded_and_leaves_nothing_behind") else { return };
    let env = env.with_busybox();
    let df = "FROM busybox\nRUN i=0; while [ $i -lt 6000 ]; do sleep 9137 & i=$((i+1)); done; echo all-forked\n";
    let (ok, out) = build(&env, "bomb", df, &[]);
    assert!(!ok, "6000 processes were allowed:\n{out}");
    assert!(out.contains("can't fork"), "{out}");
    assert!(!out.lines().any(|l| l.starts_with('#') && l.ends_with(" all-forked")), "{out}");
    assert_eq!(processes_running("sleep 9137"), 0, "the bomb's processes outlived the step");
}

fn processes_running(marker: &str) -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().bytes().all(|b| b.is_ascii_digit()))
        .filter(|e| {
            std::fs::read(e.path().join("cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).replace('\0', " ").trim() == marker)
        })
        .count()
}

#[test]
fn run_memory_limit_kills_a_hog_with_137() {
    let Some(env) = env("run_memory_limit_kills_a_hog_with_137") else { return };
    let env = env.with_busybox();
    // A shell string that doubles until something stops it.
    let hog = "a=xxxxxxxxxxxxxxxx; while :; do a=$a$a; done";
    let out = env.run(&["run", "--rm", "--memory", "64m", "busybox", "sh", "-c", hog]);
    assert_eq!(out.status.code(), Some(137), "{}", String::from_utf8_lossy(&out.stderr));
    // Without the limit, the same command is not what stops at 64 MiB: a bounded hog
    // (256 MiB) completes.
    let bounded = "a=xxxxxxxxxxxxxxxx; i=0; while [ $i -lt 24 ]; do a=$a$a; i=$((i+1)); done; echo ${#a}";
    let out = env.run(&["run", "--rm", "busybox", "sh", "-c", bounded]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "268435456\n", "{}", String::from_utf8_lossy(&out.stderr));
    let out = env.run(&["run", "--rm", "--memory", "64m", "busybox", "sh", "-c", bounded]);
    assert_eq!(out.status.code(), Some(137));
}

#[test]
fn run_refuses_a_relative_bind_source() {
    let Some(env) = env("run_refuses_a_relative_bind_source") else { return };
    let env = env.with_busybox();
    for spec in ["rel/path:/x", "../../etc:/x", "./here:/x"] {
        let out = env.run(&["run", "--rm", "-v", spec, "busybox", "true"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(125), "{spec}: {err}");
        assert!(err.contains("invalid characters for a local volume name") && err.contains("absolute path"), "{err}");
    }
    // A name and an absolute path still work.
    env.ok(&["run", "--rm", "-v", "data:/x", "busybox", "true"]);
    let abs = env.work.path().to_str().unwrap().to_string();
    env.ok(&["run", "--rm", "-v", &format!("{abs}:/x:ro"), "busybox", "ls", "/x"]);
}

/// As BuildKit: only steps the build solves need their entitlement; a stage the
/// target does not use may ask for the host network.
#[test]
fn an_unused_stage_needs_no_entitlement() {
    let Some(env) = env("an_unused_stage_needs_no_entitlement") else { return };
    let env = env.with_busybox();
    let df = "FROM busybox AS tools\nRUN --network=host true\nFROM busybox\nRUN echo used\n";
    let (ok, out) = build(&env, "unused", df, &[]);
    assert!(ok && out.contains("used"), "{out}");
    let (ok, out) = build(&env, "used", df, &["--target", "tools"]);
    assert!(!ok && out.contains("--allow network.host"), "{out}");
}

/// A tmpfs mount cannot claim more than half the machine's memory, whatever size it asks.
#[test]
fn a_tmpfs_mount_is_capped_at_half_the_memory() {
    let Some(env) = env("a_tmpfs_mount_is_capped_at_half_the_memory") else { return };
    let env = env.with_busybox();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
    let total_kib: u64 = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let df = "FROM busybox\nRUN --mount=type=tmpfs,target=/t,size=100g df -k /t | tail -1 | awk '{print \"size-kib\", $2}'\n";
    let (ok, out) = build(&env, "tmpfs", df, &[]);
    assert!(ok, "{out}");
    let size: u64 = out
        .split("size-kib ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{out}"));
    assert!(size <= total_kib / 2 + 4, "a 100g tmpfs got {size} KiB of {total_kib} KiB");
    assert!(size >= total_kib / 2 - 1024, "{size} KiB");
}
