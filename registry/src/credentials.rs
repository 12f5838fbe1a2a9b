//! Docker's `config.json` (`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`):
//! `credHelpers` (per host), `credsStore` (default helper), `auths` (base64
//! `user:password` or an identity token); `login` and `logout` write the same file.
//! Helpers are `docker-credential-NAME get|store|erase` speaking JSON on stdio.

use crate::RegistryOptions;
use base64::Engine as _;
use serde_json::{Map, Value};
use std::io::{self, Write as _};
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// Why credentials could not be read or saved. Never shows a secret.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("{action} {}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("parsing {}", path.display())]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{} is not a JSON object", path.display())]
    NotAnObject { path: PathBuf },
    #[error("\"auths\" in {} is not an object", path.display())]
    AuthsNotAnObject { path: PathBuf },
    #[error("credentials for {registry} in {}", path.display())]
    Entry {
        registry: String,
        path: PathBuf,
        #[source]
        source: Box<CredentialsError>,
    },
    #[error("the \"auth\" field is {problem}")]
    AuthField { problem: &'static str },
    #[error("{action} {program}")]
    Helper {
        action: &'static str,
        program: String,
        #[source]
        source: io::Error,
    },
    #[error("docker-credential-{helper} {verb} failed: {message}")]
    HelperFailed { helper: String, verb: &'static str, message: String },
    #[error("docker-credential-{helper} get printed something that is not a credential")]
    HelperOutput { helper: String },
}

type Result<T, E = CredentialsError> = std::result::Result<T, E>;

/// What to authenticate with. `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    Basic {
        username: String,
        password: String,
    },
    /// An OAuth2 refresh token (`identitytoken`, or a helper's `<token>` user).
    IdentityToken {
        username: String,
        token: String,
    },
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::Basic { username, .. } => write!(f, "Basic({username}, <redacted>)"),
            Credential::IdentityToken { username, .. } => write!(f, "IdentityToken({username}, <redacted>)"),
        }
    }
}

/// The key Docker uses for Docker Hub in `auths` and for helpers.
const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";

fn config_key(registry: &str) -> &str {
    match registry {
        "docker.io" | "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB_KEY,
        other => other,
    }
}

/// `host` from an `auths` key written as a URL (`https://host/v1/`) or a bare host.
fn key_host(key: &str) -> &str {
    let rest = key.strip_prefix("https://").or_else(|| key.strip_prefix("http://")).unwrap_or(key);
    rest.split('/').next().unwrap_or(rest)
}

pub fn config_path(opts: &RegistryOptions) -> PathBuf {
    if let Some(dir) = &opts.docker_config {
        return dir.join("config.json");
    }
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("config.json");
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/"));
    home.join(".docker/config.json")
}

fn read_config(opts: &RegistryOptions) -> Result<Map<String, Value>> {
    let path = config_path(opts);
    match std::fs::read(&path) {
        Ok(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => Ok(Map::new()),
        Ok(bytes) => match serde_json::from_slice(&bytes) {
            Ok(Value::Object(map)) => Ok(map),
            Ok(_) => Err(CredentialsError::NotAnObject { path }),
            Err(source) => Err(CredentialsError::Parse { path, source }),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Map::new()),
        Err(source) => Err(CredentialsError::Io { action: "reading", path, source }),
    }
}

/// The credential configured for `registry`, if any.
pub fn lookup(registry: &str, opts: &RegistryOptions) -> Result<Option<Credential>> {
    let config = read_config(opts)?;
    let key = config_key(registry);
    if let Some(helper) = helper_for(&config, registry) {
        if let Some(c) = helper_get(&helper, key)? {
            return Ok(Some(c));
        }
        if config.get("credHelpers").and_then(|h| h.get(registry)).is_some() {
            return Ok(None);
        }
    }
    let Some(Value::Object(auths)) = config.get("auths") else { return Ok(None) };
    let entry = auths.get(key).or_else(|| {
        auths.iter().find(|(k, _)| config_key(key_host(k)) == key || key_host(k) == registry).map(|(_, v)| v)
    });
    match entry {
        Some(entry) => parse_auth_entry(entry).map_err(|e| CredentialsError::Entry {
            registry: registry.to_string(),
            path: config_path(opts),
            source: Box::new(e),
        }),
        None => Ok(None),
    }
}

fn helper_for(config: &Map<String, Value>, registry: &str) -> Option<String> {
    let per_host = config.get("credHelpers").and_then(|h| h.get(registry).or_else(|| h.get(config_key(registry))));
    per_host.or_else(|| config.get("credsStore")).and_then(Value::as_str).filter(|s| !s.is_empty()).map(String::from)
}

fn parse_auth_entry(entry: &Value) -> Result<Option<Credential>> {
    let field = |name: &str| entry.get(name).and_then(Value::as_str).filter(|s| !s.is_empty());
    if let Some(token) = field("identitytoken") {
        let username = field("username").unwrap_or_default().to_string();
        return Ok(Some(Credential::IdentityToken { username, token: token.to_string() }));
    }
    if let Some(auth) = field("auth") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .map_err(|_| CredentialsError::AuthField { problem: "not valid base64" })?;
        let decoded = String::from_utf8(decoded).map_err(|_| CredentialsError::AuthField { problem: "not UTF-8" })?;
        let (username, password) =
            decoded.split_once(':').ok_or(CredentialsError::AuthField { problem: "not base64 of user:password" })?;
        return Ok(Some(Credential::Basic { username: username.to_string(), password: password.to_string() }));
    }
    if let (Some(username), Some(password)) = (field("username"), field("password")) {
        return Ok(Some(Credential::Basic { username: username.to_string(), password: password.to_string() }));
    }
    Ok(None)
}

fn run_helper(helper: &str, verb: &str, input: &[u8]) -> Result<std::process::Output> {
    let failed = |action: &'static str, program: &str| {
        let program = program.to_string();
        move |source| CredentialsError::Helper { action, program, source }
    };
    let program = format!("docker-credential-{helper}");
    let mut command = Command::new(&program);
    #[cfg(test)]
    if let Some(path) = tests::HELPER_PATH.with(|p| p.borrow().clone()) {
        // Setting PATH on the command makes it search there; the test process's
        // own environment stays untouched.
        command.env("PATH", path);
    }
    let mut child = command
        .arg(verb)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(failed("running credential helper", &program))?;
    child.stdin.take().expect("piped stdin").write_all(input).map_err(failed("writing to", &program))?;
    child.wait_with_output().map_err(failed("waiting for", &program))
}

fn helper_get(helper: &str, server: &str) -> Result<Option<Credential>> {
    let out = run_helper(helper, "get", server.as_bytes())?;
    if !out.status.success() {
        let stdout = String::from_utf8_lossy(&out.stdout);
        if stdout.contains("credentials not found") || out.stdout.is_empty() {
            return Ok(None);
        }
        // The helper's own message, never its input.
        return Err(CredentialsError::HelperFailed {
            helper: helper.to_string(),
            verb: "get",
            message: stdout.trim().to_string(),
        });
    }
    #[derive(serde::Deserialize)]
    struct HelperCredential {
        #[serde(rename = "Username", default)]
        username: String,
        #[serde(rename = "Secret", default)]
        secret: String,
    }
    let c: HelperCredential = serde_json::from_slice(&out.stdout)
        .map_err(|_| CredentialsError::HelperOutput { helper: helper.to_string() })?;
    if c.secret.is_empty() {
        return Ok(None);
    }
    Ok(Some(if c.username == "<token>" {
        Credential::IdentityToken { username: c.username, token: c.secret }
    } else {
        Credential::Basic { username: c.username, password: c.secret }
    }))
}

/// Saves a credential for `registry`: through the configured helper when there is
/// one, else as base64 `user:password` under `auths`.
pub fn store(registry: &str, username: &str, password: &str, opts: &RegistryOptions) -> Result<()> {
    let mut config = read_config(opts)?;
    let key = config_key(registry);
    if let Some(helper) = helper_for(&config, registry) {
        let input = serde_json::json!({ "ServerURL": key, "Username": username, "Secret": password });
        let out = run_helper(&helper, "store", input.to_string().as_bytes())?;
        if !out.status.success() {
            let message = String::from_utf8_lossy(&out.stdout).trim().to_string();
            return Err(CredentialsError::HelperFailed { helper, verb: "store", message });
        }
        return Ok(());
    }
    let auths = config.entry("auths").or_insert_with(|| Value::Object(Map::new()));
    let auths = auths.as_object_mut().ok_or_else(|| CredentialsError::AuthsNotAnObject { path: config_path(opts) })?;
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
    auths.insert(key.to_string(), serde_json::json!({ "auth": encoded }));
    write_config(opts, &config)
}

/// Removes the credential for `registry`; `false` when there was none.
pub fn erase(registry: &str, opts: &RegistryOptions) -> Result<bool> {
    let mut config = read_config(opts)?;
    let key = config_key(registry);
    let mut removed = false;
    if let Some(helper) = helper_for(&config, registry) {
        let out = run_helper(&helper, "erase", key.as_bytes())?;
        removed |= out.status.success();
    }
    if let Some(Value::Object(auths)) = config.get_mut("auths") {
        let keys: Vec<String> = auths
            .keys()
            .filter(|k| k.as_str() == key || key_host(k) == registry || config_key(key_host(k)) == key)
            .cloned()
            .collect();
        for k in &keys {
            auths.remove(k);
        }
        if !keys.is_empty() {
            removed = true;
            write_config(opts, &config)?;
        }
    }
    Ok(removed)
}

/// Replaces config.json atomically, readable by its owner only: a temp file in the
/// same directory (so the rename stays on one filesystem), mode 0600 before any secret
/// is in it, fsynced, renamed over the old file, and the directory fsynced so the
/// rename survives a crash too — what `store::replace` does with
/// `Durability::Synced`. Not that function: the registry crate may not depend on the
/// store (docs/architecture.md), and the file is Docker's, outside any store.
fn write_config(opts: &RegistryOptions, config: &Map<String, Value>) -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let path = config_path(opts);
    let dir = path.parent().unwrap_or(std::path::Path::new("/"));
    let io = |action, path: &std::path::Path| {
        let path = path.to_path_buf();
        move |source| CredentialsError::Io { action, path, source }
    };
    std::fs::create_dir_all(dir).map_err(io("creating", dir))?;
    let mut temp = tempfile::Builder::new()
        .prefix(".config.json-")
        .tempfile_in(dir)
        .map_err(io("creating a temp file in", dir))?;
    let mut bytes = serde_json::to_vec_pretty(config).expect("JSON values serialize");
    bytes.push(b'\n');
    let written = temp
        .as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o600))
        .and_then(|()| temp.write_all(&bytes))
        .and_then(|()| temp.as_file().sync_all());
    written.map_err(io("writing", temp.path()))?;
    temp.persist(&path).map_err(|e| io("replacing", &path)(e.error))?;
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io("syncing", dir))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(dir: &std::path::Path) -> RegistryOptions {
        RegistryOptions { docker_config: Some(dir.to_path_buf()), ..RegistryOptions::default() }
    }

    #[test]
    fn store_lookup_erase_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let o = opts(dir.path());
        std::fs::write(dir.path().join("config.json"), r#"{"auths":{},"psFormat":"table"}"#).unwrap();
        assert_eq!(lookup("localhost:5000", &o).unwrap(), None);
        store("localhost:5000", "alice", "s3cret:x", &o).unwrap();
        store("docker.io", "bob", "pw", &o).unwrap();
        let text = std::fs::read_to_string(dir.path().join("config.json")).unwrap();
        assert!(!text.contains("s3cret"), "the password is stored base64-encoded");
        assert!(text.contains("psFormat"), "other settings survive");
        assert!(text.contains(DOCKER_HUB_KEY));
        assert_eq!(
            lookup("localhost:5000", &o).unwrap(),
            Some(Credential::Basic { username: "alice".into(), password: "s3cret:x".into() })
        );
        assert!(
            matches!(lookup("docker.io", &o).unwrap(), Some(Credential::Basic { username, .. }) if username == "bob")
        );
        assert!(erase("localhost:5000", &o).unwrap());
        assert!(!erase("localhost:5000", &o).unwrap());
        assert_eq!(lookup("localhost:5000", &o).unwrap(), None);
        let mode = std::fs::metadata(dir.path().join("config.json")).unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(mode.permissions().mode() & 0o777, 0o600);
        // Every write renamed its temp file into place: nothing else is left.
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["config.json"]);
    }

    #[test]
    fn url_keys_and_identity_tokens() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("config.json"),
            r#"{"auths":{"https://reg.example.com/v2/":{"auth":"dTpw"},"tok.example.com":{"identitytoken":"rt"}}}"#,
        )
        .unwrap();
        let o = opts(dir.path());
        assert_eq!(
            lookup("reg.example.com", &o).unwrap(),
            Some(Credential::Basic { username: "u".into(), password: "p".into() })
        );
        assert!(
            matches!(lookup("tok.example.com", &o).unwrap(), Some(Credential::IdentityToken { token, .. }) if token == "rt")
        );
        let shown = format!("{:?}", lookup("reg.example.com", &o).unwrap());
        assert!(!shown.contains("\"p\"") && shown.contains("redacted"), "{shown}");
    }

    #[test]
    fn credential_helpers_are_asked() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let helper = bin.join("docker-credential-testhelper");
        std::fs::write(
            &helper,
            "#!/bin/sh\nread host\nif [ \"$1\" = get ] && [ \"$host\" = helped.example.com ]; then\n\
             echo '{\"ServerURL\":\"helped.example.com\",\"Username\":\"hu\",\"Secret\":\"hs\"}'; exit 0; fi\n\
             echo 'credentials not found in native keychain'; exit 1\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(dir.path().join("config.json"), r#"{"credHelpers":{"helped.example.com":"testhelper"}}"#)
            .unwrap();
        let o = opts(dir.path());
        let old = std::env::var_os("PATH").unwrap_or_default();
        let new = std::env::join_paths(std::iter::once(bin.clone()).chain(std::env::split_paths(&old))).unwrap();
        let found = with_path(&new, || lookup("helped.example.com", &o));
        assert_eq!(found.unwrap(), Some(Credential::Basic { username: "hu".into(), password: "hs".into() }));
        assert_eq!(with_path(&new, || lookup("other.example.com", &o)).unwrap(), None);
    }

    /// Runs `f` with credential helpers searched on `path` (this thread only).
    fn with_path<T>(path: &std::ffi::OsStr, f: impl FnOnce() -> T) -> T {
        HELPER_PATH.with(|p| *p.borrow_mut() = Some(path.to_os_string()));
        let out = f();
        HELPER_PATH.with(|p| *p.borrow_mut() = None);
        out
    }

    thread_local! {
        pub(super) static HELPER_PATH: std::cell::RefCell<Option<std::ffi::OsString>> = const { std::cell::RefCell::new(None) };
    }
}
