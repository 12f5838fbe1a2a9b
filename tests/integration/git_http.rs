//! Git over HTTP with credentials: a password in the URL, or a `GIT_AUTH_TOKEN`
//! secret, reaches the server and nothing else.

use crate::git::{Repo, git, tree, vertex_lines};
use crate::util::env;
use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// What the server was asked: each request's path and whether it was authorized.
type Log = Arc<Mutex<Vec<(String, bool)>>>;

/// Serves `root` over git's "dumb" HTTP protocol (plain files) on 127.0.0.1, asking
/// for `user:password` (or the token as `x-access-token`) with a 401 otherwise.
fn serve(root: PathBuf, user: &'static str, password: &'static str, token: &'static str) -> (String, Log) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let log: Log = Arc::default();
    let seen = log.clone();
    let b64 = |s: String| base64(s.as_bytes());
    let accepted = [b64(format!("{user}:{password}")), b64(format!("x-access-token:{token}"))];
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            let _ = reader.read_line(&mut request);
            let path = request.split_whitespace().nth(1).unwrap_or("/").split('?').next().unwrap().to_string();
            let mut authorized = false;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                    break;
                }
                let lower = line.to_ascii_lowercase();
                if let Some(value) = lower.strip_prefix("authorization: basic ") {
                    let value = line[line.len() - value.len()..].trim();
                    authorized |= accepted.iter().any(|a| a == value);
                }
            }
            seen.lock().unwrap().push((path.clone(), authorized));
            let mut stream = stream;
            let file = root.join(path.trim_start_matches('/'));
            let response = if !authorized {
                b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"git\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec()
            } else if !path.contains("..") && file.is_file() {
                let body = std::fs::read(&file).unwrap();
                let mut r = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len())
                    .into_bytes();
                r.extend(body);
                r
            } else {
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec()
            };
            let _ = stream.write_all(&response);
        }
    });
    (format!("127.0.0.1:{}", addr.port()), log)
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            out.push(if i <= chunk.len() { ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char } else { '=' });
        }
    }
    out
}

/// Every file under `dir` whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &str) -> Vec<String> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file())
        .filter(|e| std::fs::read(e.path()).is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle.as_bytes())))
        .map(|e| e.path().display().to_string())
        .collect()
}

#[test]
fn add_git_over_http_with_a_password_or_a_token() {
    let Some(env) = env("add_git_http") else { return };
    let repo = Repo::new(&env);
    // The dumb protocol reads `info/refs`; it cannot fetch shallow.
    git(&repo.bare, &["update-server-info"]);
    let password = "s3cret-pw-91b2";
    let token = "tok-5d0e77";
    let (host, log) = serve(repo.bare.parent().unwrap().to_path_buf(), "ci", password, token);

    // A build context, so that the URL is not in the Dockerfile's text (an `ADD URL`
    // step is named by its line, password and all, as in BuildKit).
    let context = format!("src=http://ci:{password}@{host}/repo.git#v1:sub");
    let ctx = env.context("pw", &[("Dockerfile", "FROM scratch\nCOPY --from=src / /src/\n")]);
    let out = env.work.path().join("out");
    let dest = format!("type=local,dest={}", out.display());
    let (ok, stdout, stderr) = env.build(&ctx, &["--build-context", &context, "-o", &dest]);
    assert!(ok, "{stderr}");
    assert_eq!(tree(&out.join("src")), ["b.txt", "deep", "deep/c.sh"]);
    assert!(log.lock().unwrap().iter().any(|(p, ok)| p.contains("/objects/") && *ok));
    // The password went to the server only: not in the output, the store or a record.
    assert!(!stdout.contains(password) && !stderr.contains(password), "{stderr}");
    assert!(stderr.contains(&format!("[context src] http://ci:xxxxx@{host}/repo.git#v1:sub")), "{stderr}");
    assert_eq!(files_containing(env.root.path(), password), Vec::<String>::new());

    // Not a cache record (it would keep the URL): checked out again, but not fetched.
    let objects = |log: &Log| log.lock().unwrap().iter().filter(|(p, _)| p.contains("/objects/")).count();
    let before = objects(&log);
    let (ok, _, stderr) = env.build(&ctx, &["--build-context", &context, "-o", &dest]);
    assert!(ok, "{stderr}");
    let name = format!("[context src] http://ci:xxxxx@{host}/repo.git#v1:sub");
    assert!(vertex_lines(&stderr, &name).iter().any(|l| l.contains(" DONE ")), "{stderr}");
    assert!(vertex_lines(&stderr, "[1/1] COPY --from=src / /src/").iter().any(|l| l.ends_with(" CACHED")));
    assert_eq!(objects(&log), before, "fetched again");
    assert_eq!(files_containing(env.root.path(), password), Vec::<String>::new());

    // A token secret instead, sent as BuildKit sends it; the source is cached.
    let url = format!("http://{host}/repo.git#main");
    let ctx = env.context("token", &[("Dockerfile", &format!("FROM scratch\nADD {url} /all/\n"))]);
    let build = |env: &crate::util::Env| {
        env.cmd(&["build", "--progress=plain", "--secret", "id=GIT_AUTH_TOKEN,env=TOKEN", "-o", &dest])
            .arg(&ctx)
            .env("TOKEN", token)
            .output()
            .unwrap()
    };
    let output = build(&env);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(out.join("all/top.txt").exists());
    let output = build(&env);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(vertex_lines(&stderr, &url).iter().any(|l| l.ends_with(" CACHED")), "{stderr}");
    assert_eq!(files_containing(env.root.path(), token), Vec::<String>::new());
}

#[test]
fn a_stalled_git_server_times_out_naming_the_remote() {
    let Some(env) = env("git_timeout") else { return };
    // Accepts and never answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let held: Vec<_> = listener.incoming().take(8).collect();
        std::thread::sleep(std::time::Duration::from_secs(60));
        drop(held);
    });
    let url = format!("git://127.0.0.1:{port}/stalled.git#main");
    let ctx = env.context("ctx", &[("Dockerfile", &format!("FROM scratch\nADD {url} /x/\n"))]);
    let start = std::time::Instant::now();
    let out = env.cmd(&["build", "--progress=plain"]).arg(&ctx).env("BUILDER_GIT_TIMEOUT", "2").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && start.elapsed().as_secs() < 30, "{stderr}");
    assert!(stderr.contains("timed out after 2s") && stderr.contains(&url), "{stderr}");
}
