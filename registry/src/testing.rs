//! Test support: a real `docker-registry` (the CNCF distribution server) on
//! 127.0.0.1, and a proxy in front of it that can demand bearer tokens from its own
//! token endpoint, answer 503, drop connections midway, or redirect blob downloads.
//! Built with the `testing` feature, for the builder's tests as well as these.

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

pub const REGISTRY_BIN: &str = "/usr/bin/docker-registry";

pub struct Registry {
    child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Registry {
    /// Starts a registry, with htpasswd auth for `user` when given. `None` (after
    /// saying why) when the binary is not installed.
    pub fn start(test: &str, user: Option<(&str, &str)>) -> Option<Registry> {
        Registry::start_with(test, user, None)
    }

    /// Starts a registry serving HTTPS with a certificate for 127.0.0.1 signed by
    /// a fresh CA; returns it with the CA's PEM. `None` (saying why) without
    /// the registry binary or `openssl`.
    pub fn start_tls(test: &str) -> Option<(Registry, Vec<u8>)> {
        let certs = tempfile::tempdir().unwrap();
        let run = |args: &[&str]| {
            Command::new("openssl")
                .args(args)
                .current_dir(certs.path())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
        std::fs::write(
            certs.path().join("ext.cnf"),
            "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        let made = run(&[
            &["req", "-x509"][..],
            &ec,
            &["-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=builder test CA"],
        ]
        .concat())
            && run(&[&["req"][..], &ec, &["-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1"]]
                .concat())
            && run(&[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "server.crt",
                "-days",
                "2",
                "-extfile",
                "ext.cnf",
            ]);
        if !made {
            eprintln!("SKIPPED {test}: openssl could not make test certificates");
            return None;
        }
        let tls = format!(
            "  tls:\n    certificate: {}\n    key: {}\n",
            certs.path().join("server.crt").display(),
            certs.path().join("server.key").display()
        );
        // The registry reads its certificate at startup, before it listens.
        let registry = Registry::start_with(test, None, Some(tls))?;
        Some((registry, std::fs::read(certs.path().join("ca.crt")).unwrap()))
    }

    fn start_with(test: &str, user: Option<(&str, &str)>, tls: Option<String>) -> Option<Registry> {
        if !Path::new(REGISTRY_BIN).exists() {
            eprintln!("SKIPPED {test}: {REGISTRY_BIN} is not installed (apt-get install docker-registry)");
            return None;
        }
        let mut dir = tempfile::tempdir().unwrap();
        let auth = match user {
            Some((name, password)) => {
                let hash = bcrypt::hash_with_result(password, 4).unwrap().format_for_version(bcrypt::Version::TwoY);
                let path = dir.path().join("htpasswd");
                std::fs::write(&path, format!("{name}:{hash}\n")).unwrap();
                format!("auth:\n  htpasswd:\n    realm: test-realm\n    path: {}\n", path.display())
            }
            None => String::new(),
        };
        for _ in 0..5 {
            let port = free_port();
            let config = format!(
                "version: 0.1\nlog:\n  level: debug\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n{tls}{auth}",
                dir.path().join("data").display(),
                tls = tls.as_deref().unwrap_or("")
            );
            let config_path = dir.path().join("config.yml");
            std::fs::write(&config_path, config).unwrap();
            let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
            let child = Command::new(REGISTRY_BIN)
                .arg("serve")
                .arg(&config_path)
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap();
            let mut registry = Registry { child, port, dir };
            if registry.wait_ready() {
                return Some(registry);
            }
            let _ = registry.child.kill();
            let _ = registry.child.wait();
            dir = registry.take_dir();
        }
        panic!("docker-registry did not start");
    }

    fn take_dir(&mut self) -> tempfile::TempDir {
        std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap())
    }

    fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Requests the registry answered, from its access log: (method, path, status).
    pub fn requests(&self) -> Vec<(String, String, u16)> {
        // The registry logs a request after answering it: wait for the log to settle.
        let read = || std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default();
        let mut log = read();
        for _ in 0..20 {
            std::thread::sleep(Duration::from_millis(100));
            let again = read();
            if again == log {
                break;
            }
            log = again;
        }
        log.lines()
            .filter_map(|line| {
                let start = line.find("\"")?;
                let rest = &line[start + 1..];
                let (request, after) = rest.split_once("\" ")?;
                let mut parts = request.split(' ');
                let (method, path) = (parts.next()?, parts.next()?);
                if !parts.next()?.starts_with("HTTP/") {
                    return None;
                }
                let status = after.split(' ').next()?.parse().ok()?;
                Some((method.to_string(), path.to_string(), status))
            })
            .collect()
    }

    /// Blob writes (POST/PUT/PATCH on `/blobs/`) seen so far.
    pub fn blob_writes(&self) -> usize {
        self.requests().iter().filter(|(m, p, _)| p.contains("/blobs/") && m != "GET" && m != "HEAD").count()
    }

    /// The digests of the blobs downloaded so far (GET `/blobs/sha256:...`).
    pub fn blob_downloads(&self) -> Vec<String> {
        self.requests()
            .into_iter()
            .filter(|(m, _, _)| m == "GET")
            .filter_map(|(_, p, _)| p.split_once("/blobs/").map(|(_, d)| d.to_string()))
            .filter(|d| d.starts_with("sha256:"))
            .collect()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A fault that fires once on the first request matching method and path part.
#[derive(Debug, Clone)]
pub struct Fault {
    pub method: &'static str,
    pub path_contains: &'static str,
    pub kind: FaultKind,
    /// How many more times it fires.
    pub times: u32,
}

#[derive(Debug, Clone, Copy)]
pub enum FaultKind {
    /// Answer 503 without forwarding.
    Unavailable,
    /// Forward, then cut the response after this many body bytes.
    CutResponse(usize),
    /// Forward this many request body bytes, then cut both connections.
    CutRequest(usize),
    /// Answer 307 to the same path on this port of `localhost`.
    Redirect(u16),
    /// Answer 429 with `Retry-After` of this many seconds.
    TooManyRequests(u32),
    /// Answer 500 without forwarding.
    ServerError,
    /// Take the request and never answer (until the proxy is dropped).
    Stall,
    /// Forward, flipping the body byte at this offset (corruption in transit).
    CorruptResponse(usize),
}

#[derive(Default)]
pub struct ProxyState {
    pub faults: Vec<Fault>,
    /// (method, path, Authorization value) of every request received.
    pub seen: Vec<(String, String, Option<String>)>,
    /// Bearer mode: the token endpoint's user and password (`None`: anonymous ok).
    pub bearer: Option<Option<(String, String)>>,
    /// Issued tokens and the scopes they grant.
    pub tokens: HashMap<String, Vec<String>>,
}

pub struct Proxy {
    pub port: u16,
    pub state: Arc<Mutex<ProxyState>>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Proxy {
    pub fn start(upstream: u16) -> Proxy {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(ProxyState::default()));
        let shared = state.clone();
        runtime.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                let state = shared.clone();
                tokio::spawn(async move {
                    let _ = handle(stream, upstream, port, state).await;
                });
            }
        });
        Proxy { port, state, runtime: Some(runtime) }
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn add_fault(&self, method: &'static str, path_contains: &'static str, kind: FaultKind, times: u32) {
        self.state.lock().unwrap().faults.push(Fault { method, path_contains, kind, times });
    }

    /// Faults that have not fired yet.
    pub fn pending_faults(&self) -> usize {
        self.state.lock().unwrap().faults.iter().filter(|f| f.times > 0).count()
    }

    pub fn seen(&self) -> Vec<(String, String, Option<String>)> {
        self.state.lock().unwrap().seen.clone()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

struct Head {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = format!("{} {} HTTP/1.1\r\n", self.method, self.path);
        for (n, v) in &self.headers {
            out.push_str(&format!("{n}: {v}\r\n"));
        }
        out.push_str("\r\n");
        out.into_bytes()
    }
}

/// Reads up to the end of the head; returns it and the body bytes read with it.
async fn read_head(stream: &mut TcpStream) -> Option<(Vec<u8>, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buf.split_off(end + 4);
            return Some((buf, rest));
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn parse_head(bytes: &[u8]) -> Option<Head> {
    let text = std::str::from_utf8(bytes).ok()?;
    let mut lines = text.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let (method, path) = (first.next()?.to_string(), first.next()?.to_string());
    let headers = lines
        .filter(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':').map(|(n, v)| (n.trim().to_string(), v.trim().to_string())))
        .collect();
    Some(Head { method, path, headers })
}

async fn respond(stream: &mut TcpStream, status: &str, headers: &[(&str, String)], body: &str) {
    let mut out = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n", body.len());
    for (n, v) in headers {
        out.push_str(&format!("{n}: {v}\r\n"));
    }
    out.push_str("\r\n");
    out.push_str(body);
    let _ = stream.write_all(out.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// `/v2/NAME/(blobs|manifests|tags)/...` → NAME.
fn repository_of(path: &str) -> Option<&str> {
    let rest = path.strip_prefix("/v2/")?;
    ["/blobs/", "/manifests/", "/tags/"].iter().filter_map(|m| rest.find(m).map(|i| &rest[..i])).min_by_key(|s| s.len())
}

fn query_values(path: &str, key: &str) -> Vec<String> {
    let Some((_, query)) = path.split_once('?') else { return Vec::new() };
    let url = reqwest::Url::parse(&format!("http://x/?{query}")).unwrap();
    url.query_pairs().filter(|(k, _)| k == key).map(|(_, v)| v.into_owned()).collect()
}

fn granted(scopes: &[String], repository: &str, action: &str) -> bool {
    scopes.iter().any(|s| {
        s.strip_prefix("repository:")
            .and_then(|r| r.rsplit_once(':'))
            .is_some_and(|(name, actions)| name == repository && actions.split(',').any(|a| a == action))
    })
}

async fn handle(
    mut client: TcpStream,
    upstream: u16,
    own_port: u16,
    state: Arc<Mutex<ProxyState>>,
) -> std::io::Result<()> {
    let Some((head_bytes, mut body_start)) = read_head(&mut client).await else { return Ok(()) };
    let Some(mut head) = parse_head(&head_bytes) else { return Ok(()) };
    let auth = head.header("authorization").map(String::from);
    let bearer = {
        let mut s = state.lock().unwrap();
        s.seen.push((head.method.clone(), head.path.clone(), auth.clone()));
        s.bearer.clone()
    };

    if let Some(users) = &bearer {
        if head.path.starts_with("/token") {
            if let Some((user, password)) = users {
                use base64::Engine as _;
                let expected =
                    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")));
                if auth.as_deref() != Some(expected.as_str()) {
                    respond(&mut client, "401 Unauthorized", &[], r#"{"details":"bad credentials"}"#).await;
                    return Ok(());
                }
            }
            let scopes = query_values(&head.path, "scope");
            let token = {
                let mut s = state.lock().unwrap();
                let token = format!("token-{}", s.tokens.len() + 1);
                s.tokens.insert(token.clone(), scopes);
                token
            };
            let body = format!(r#"{{"token":"{token}","expires_in":300}}"#);
            respond(&mut client, "200 OK", &[("Content-Type", "application/json".into())], &body).await;
            return Ok(());
        }
        let scopes = auth
            .as_deref()
            .and_then(|a| a.strip_prefix("Bearer "))
            .and_then(|t| state.lock().unwrap().tokens.get(t).cloned());
        let ok = match (repository_of(&head.path), &scopes) {
            (_, None) => false,
            (None, Some(_)) => true,
            (Some(repo), Some(scopes)) => {
                let action = if matches!(head.method.as_str(), "GET" | "HEAD") { "pull" } else { "push" };
                let mount_ok = query_values(&head.path, "from").iter().all(|from| granted(scopes, from, "pull"));
                granted(scopes, repo, action) && mount_ok
            }
        };
        if !ok {
            let scope =
                repository_of(&head.path).map(|r| format!(",scope=\"repository:{r}:pull,push\"")).unwrap_or_default();
            let challenge =
                format!("Bearer realm=\"http://127.0.0.1:{own_port}/token\",service=\"test-registry\"{scope}");
            let body = r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required","detail":null}]}"#;
            respond(
                &mut client,
                "401 Unauthorized",
                &[("WWW-Authenticate", challenge), ("Content-Type", "application/json".into())],
                body,
            )
            .await;
            return Ok(());
        }
        head.headers.retain(|(n, _)| !n.eq_ignore_ascii_case("authorization"));
    }

    let fault = {
        let mut s = state.lock().unwrap();
        s.faults.iter_mut().find(|f| f.times > 0 && f.method == head.method && head.path.contains(f.path_contains)).map(
            |f| {
                f.times -= 1;
                f.kind
            },
        )
    };
    match fault {
        Some(FaultKind::Unavailable) => {
            let body = r#"{"errors":[{"code":"UNAVAILABLE","message":"injected by the test proxy"}]}"#;
            respond(&mut client, "503 Service Unavailable", &[("Retry-After", "0".into())], body).await;
            return Ok(());
        }
        Some(FaultKind::TooManyRequests(seconds)) => {
            let body = r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"injected by the test proxy"}]}"#;
            respond(&mut client, "429 Too Many Requests", &[("Retry-After", seconds.to_string())], body).await;
            return Ok(());
        }
        Some(FaultKind::ServerError) => {
            respond(&mut client, "500 Internal Server Error", &[], "injected by the test proxy").await;
            return Ok(());
        }
        Some(FaultKind::Stall) => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            return Ok(());
        }
        Some(FaultKind::Redirect(port)) => {
            respond(
                &mut client,
                "307 Temporary Redirect",
                &[("Location", format!("http://localhost:{port}{}", head.path))],
                "",
            )
            .await;
            return Ok(());
        }
        _ => {}
    }

    head.headers.retain(|(n, _)| !n.eq_ignore_ascii_case("connection"));
    head.headers.push(("Connection".into(), "close".into()));
    let mut upstream_stream = TcpStream::connect(("127.0.0.1", upstream)).await?;
    upstream_stream.write_all(&head.encode()).await?;
    let (mut client_read, mut client_write) = client.into_split();
    let (mut up_read, mut up_write) = upstream_stream.into_split();

    if let Some(FaultKind::CutRequest(limit)) = fault {
        // Never wait for more than the body holds: cut before its end.
        let length: usize = head.header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
        let limit = limit.min(length.saturating_sub(1));
        body_start.truncate(limit);
        up_write.write_all(&body_start).await?;
        let mut left = limit - body_start.len();
        let mut buf = vec![0u8; 16384];
        while left > 0 {
            let n = client_read.read(&mut buf[..left.min(16384)]).await?;
            if n == 0 {
                break;
            }
            up_write.write_all(&buf[..n]).await?;
            left -= n;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        return Ok(()); // dropping every half closes both connections
    }

    up_write.write_all(&body_start).await?;
    let to_upstream = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut client_read, &mut up_write).await;
        let _ = up_write.shutdown().await;
    });
    match fault {
        Some(FaultKind::CutResponse(limit)) => {
            let mut buf = vec![0u8; 16384];
            let mut received = Vec::new();
            // Forward the head, then `limit` body bytes.
            loop {
                let n = up_read.read(&mut buf).await?;
                if n == 0 {
                    break;
                }
                received.extend_from_slice(&buf[..n]);
                if let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n")
                    && received.len() >= end + 4 + limit
                {
                    received.truncate(end + 4 + limit);
                    break;
                }
            }
            client_write.write_all(&received).await?;
            to_upstream.abort();
            // Dropping the halves resets both connections mid-body.
        }
        Some(FaultKind::CorruptResponse(offset)) => {
            let mut received = Vec::new();
            up_read.read_to_end(&mut received).await?;
            if let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n")
                && let Some(byte) = received.get_mut(end + 4 + offset)
            {
                *byte ^= 0x5a;
            }
            client_write.write_all(&received).await?;
            let _ = client_write.shutdown().await;
            to_upstream.abort();
        }
        _ => {
            let _ = tokio::io::copy(&mut up_read, &mut client_write).await;
            let _ = client_write.shutdown().await;
            to_upstream.abort();
        }
    }
    Ok(())
}

/// Deterministic, incompressible-ish bytes.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Every file under `dir`, for checks that nothing partial or secret was left.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file())
        .map(|e| e.path().to_path_buf())
        .collect()
}
