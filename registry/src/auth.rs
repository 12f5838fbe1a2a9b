//! Authentication from `WWW-Authenticate` challenges: bearer tokens per set of
//! repository scopes (cached until they expire) and Basic auth. Credentials come from
//! `credentials.rs` and are looked up once per client, on the first challenge.

use crate::RegistryOptions;
use crate::credentials::{self, Credential};
use crate::error::{Error, Result};
use crate::op::{Op, describe_status, safe_url};
use crate::retry::backoff;
use base64::Engine as _;
use reqwest::header::HeaderValue;
use reqwest::{StatusCode, Url};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// `repository:NAME:ACTIONS`, what a bearer token is asked for.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Scope {
    pub repository: String,
    pub actions: &'static str,
}

impl Scope {
    pub fn pull(repository: &str) -> Scope {
        Scope { repository: repository.to_string(), actions: "pull" }
    }

    pub fn push(repository: &str) -> Scope {
        Scope { repository: repository.to_string(), actions: "pull,push" }
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "repository:{}:{}", self.repository, self.actions)
    }
}

/// One `WWW-Authenticate` challenge: its scheme and parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub scheme: String,
    pub params: HashMap<String, String>,
}

#[derive(Debug, Clone)]
enum Scheme {
    /// No challenge seen yet: requests go out anonymous.
    Unknown,
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
    },
}

struct Token {
    value: String,
    expires: Instant,
}

struct State {
    scheme: Scheme,
    /// Looked up on the first challenge; `Some(None)` means none configured.
    credential: Option<Option<Credential>>,
    tokens: HashMap<String, Token>,
}

pub struct Auth {
    registry: String,
    opts: RegistryOptions,
    state: tokio::sync::Mutex<State>,
}

impl Auth {
    pub fn new(registry: &str, opts: &RegistryOptions) -> Auth {
        Auth {
            registry: registry.to_string(),
            opts: opts.clone(),
            state: tokio::sync::Mutex::new(State { scheme: Scheme::Unknown, credential: None, tokens: HashMap::new() }),
        }
    }

    /// Uses these credentials instead of the ones configured (for `login`).
    pub fn with_credential(registry: &str, opts: &RegistryOptions, credential: Credential) -> Auth {
        Auth {
            registry: registry.to_string(),
            opts: opts.clone(),
            state: tokio::sync::Mutex::new(State {
                scheme: Scheme::Unknown,
                credential: Some(Some(credential)),
                tokens: HashMap::new(),
            }),
        }
    }

    fn credential<'s>(&self, state: &'s mut State) -> Result<Option<&'s Credential>> {
        if state.credential.is_none() {
            state.credential = Some(credentials::lookup(&self.registry, &self.opts)?);
        }
        Ok(state.credential.as_ref().and_then(|c| c.as_ref()))
    }

    /// The `Authorization` value for a request needing `scopes`, fetching a token
    /// when the registry asked for bearer auth and none is cached.
    pub async fn header_for(&self, http: &reqwest::Client, op: &Op, scopes: &[Scope]) -> Result<Option<HeaderValue>> {
        let mut state = self.state.lock().await;
        match state.scheme.clone() {
            Scheme::Unknown => Ok(None),
            Scheme::Basic => Ok(self.credential(&mut state)?.map(basic_header)),
            Scheme::Bearer { realm, service } => {
                let key = scope_key(scopes);
                if let Some(token) = state.tokens.get(&key)
                    && token.expires > Instant::now()
                {
                    return Ok(Some(bearer_header(&token.value)?));
                }
                let credential = self.credential(&mut state)?.cloned();
                let token = fetch_token(http, op, &realm, service.as_deref(), scopes, credential.as_ref()).await?;
                let header = bearer_header(&token.value)?;
                state.tokens.insert(key, token);
                Ok(Some(header))
            }
        }
    }

    /// Handles a 401: remembers the challenge and, for bearer auth, drops the
    /// cached token of these scopes if it is the one that was refused (`sent`);
    /// a token fetched meanwhile by a concurrent request is kept. Returns whether
    /// a retry could succeed.
    pub async fn on_challenge(
        &self,
        headers: &[HeaderValue],
        scopes: &[Scope],
        sent: Option<&HeaderValue>,
    ) -> Result<bool> {
        let challenges: Vec<Challenge> =
            headers.iter().filter_map(|h| h.to_str().ok()).flat_map(parse_challenges).collect();
        let mut state = self.state.lock().await;
        if let Some(bearer) = challenges.iter().find(|c| c.scheme.eq_ignore_ascii_case("bearer"))
            && let Some(realm) = bearer.params.get("realm")
        {
            let same_realm = matches!(&state.scheme, Scheme::Bearer { realm: r, .. } if r == realm);
            state.scheme = Scheme::Bearer { realm: realm.clone(), service: bearer.params.get("service").cloned() };
            let key = scope_key(scopes);
            let refused = match state.tokens.get(&key) {
                Some(token) => !same_realm || sent == Some(&bearer_header(&token.value)?),
                None => false,
            };
            if refused {
                state.tokens.remove(&key);
            }
            return Ok(true);
        }
        if challenges.iter().any(|c| c.scheme.eq_ignore_ascii_case("basic")) {
            // Concurrent requests may all meet the challenge; each retries once
            // (the caller allows one retry per request), so no loop is possible.
            state.scheme = Scheme::Basic;
            return Ok(self.credential(&mut state)?.is_some());
        }
        Ok(false)
    }
}

fn scope_key(scopes: &[Scope]) -> String {
    let mut names: Vec<String> = scopes.iter().map(Scope::to_string).collect();
    names.sort();
    names.dedup();
    names.join(" ")
}

fn basic_header(credential: &Credential) -> HeaderValue {
    let (user, secret) = match credential {
        Credential::Basic { username, password } => (username.as_str(), password.as_str()),
        Credential::IdentityToken { username, token } => (username.as_str(), token.as_str()),
    };
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{secret}"));
    let mut value = HeaderValue::from_str(&format!("Basic {encoded}")).expect("base64 is a valid header value");
    value.set_sensitive(true);
    value
}

fn bearer_header(token: &str) -> Result<HeaderValue> {
    let mut value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| Error::MalformedToken)?;
    value.set_sensitive(true);
    Ok(value)
}

#[derive(serde::Deserialize)]
struct TokenResponse {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

/// Asks the token server for a token covering `scopes` (the distribution token
/// protocol; OAuth2 refresh-token grant for identity tokens).
async fn fetch_token(
    http: &reqwest::Client,
    op: &Op,
    realm: &str,
    service: Option<&str>,
    scopes: &[Scope],
    credential: Option<&Credential>,
) -> Result<Token> {
    let mut url = Url::parse(realm).map_err(|_| op.error(None, format!("bad token realm {realm:?}")))?;
    let scope_names: Vec<String> = {
        let mut v: Vec<String> = scopes.iter().map(Scope::to_string).collect();
        v.sort();
        v.dedup();
        v
    };
    let request = match credential {
        Some(Credential::IdentityToken { token, .. }) => {
            let mut form = Url::parse("http://form/").expect("static URL");
            {
                let mut pairs = form.query_pairs_mut();
                pairs.append_pair("grant_type", "refresh_token");
                pairs.append_pair("refresh_token", token);
                pairs.append_pair("client_id", "builder");
                if let Some(s) = service {
                    pairs.append_pair("service", s);
                }
                if !scope_names.is_empty() {
                    pairs.append_pair("scope", &scope_names.join(" "));
                }
            }
            let body = form.query().unwrap_or_default().to_string();
            http.post(url.clone()).header("content-type", "application/x-www-form-urlencoded").body(body)
        }
        _ => {
            {
                let mut pairs = url.query_pairs_mut();
                if let Some(s) = service {
                    pairs.append_pair("service", s);
                }
                for s in &scope_names {
                    pairs.append_pair("scope", s);
                }
            }
            let mut request = http.get(url.clone());
            if let Some(c @ Credential::Basic { .. }) = credential {
                request = request.header(reqwest::header::AUTHORIZATION, basic_header(c));
            }
            request
        }
    };
    let realm_shown = safe_url(&url);
    let mut last_error = None;
    for attempt in 0..3u32 {
        if attempt > 0 {
            tokio::time::sleep(backoff(attempt)).await;
        }
        let response = match request.try_clone().expect("token requests have in-memory bodies").send().await {
            Ok(r) => r,
            Err(e) => {
                last_error = Some(op.caused(format!("requesting a token from {realm_shown}"), e).into());
                continue;
            }
        };
        let status = response.status();
        let body = crate::body::read_prefix(response, crate::body::MAX_SMALL_BODY).await;
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            last_error = Some(
                op.error(Some(status), format!("token server {realm_shown}: {}", describe_status(status, &body)))
                    .into(),
            );
            continue;
        }
        if !status.is_success() {
            let what = if credential.is_some() { "authentication failed" } else { "anonymous token refused" };
            return Err(op
                .error(Some(status), format!("{what}: token server {realm_shown}: {}", describe_status(status, &body)))
                .into());
        }
        let parsed: TokenResponse = serde_json::from_slice(&body)
            .map_err(|_| op.error(Some(status), format!("token server {realm_shown} sent a malformed response")))?;
        let value = parsed
            .token
            .filter(|t| !t.is_empty())
            .or(parsed.access_token)
            .ok_or_else(|| op.error(Some(status), format!("token server {realm_shown} sent no token")))?;
        // Tokens live at least 60s (distribution spec); renew 10s early.
        let lifetime = Duration::from_secs(parsed.expires_in.unwrap_or(60).max(60) - 10);
        return Ok(Token { value, expires: Instant::now() + lifetime });
    }
    Err(Error::TokenServer { source: Box::new(last_error.expect("at least one attempt")) })
}

/// Parses a `WWW-Authenticate` value: `Bearer realm="..",service="..",scope="a,b"`.
/// Several challenges in one header are split at a scheme token that follows a comma.
pub fn parse_challenges(header: &str) -> Vec<Challenge> {
    let mut out: Vec<Challenge> = Vec::new();
    let mut rest = header.trim();
    while !rest.is_empty() {
        // A scheme: a token followed by a space (or the end).
        let scheme_end = rest.find([' ', ',']).unwrap_or(rest.len());
        let scheme = &rest[..scheme_end];
        rest = rest[scheme_end..].trim_start_matches([' ', ',']);
        let mut params = HashMap::new();
        while let Some(eq) = rest.find('=') {
            let key = rest[..eq].trim();
            if key.contains([' ', ',']) {
                break; // the next challenge's scheme
            }
            let after = &rest[eq + 1..];
            let (value, remaining) = if let Some(quoted) = after.strip_prefix('"') {
                let mut value = String::new();
                let mut chars = quoted.char_indices();
                let mut end = quoted.len();
                while let Some((i, c)) = chars.next() {
                    match c {
                        '\\' => {
                            if let Some((_, n)) = chars.next() {
                                value.push(n);
                            }
                        }
                        '"' => {
                            end = i + 1;
                            break;
                        }
                        c => value.push(c),
                    }
                }
                (value, &quoted[end.min(quoted.len())..])
            } else {
                let end = after.find(',').unwrap_or(after.len());
                (after[..end].trim().to_string(), &after[end..])
            };
            params.insert(key.to_ascii_lowercase(), value);
            rest = remaining.trim_start_matches([' ', ',']);
        }
        if !scheme.is_empty() {
            out.push(Challenge { scheme: scheme.to_string(), params });
        }
        if scheme_end == 0 {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_and_basic_challenges() {
        let c = parse_challenges(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/ubuntu:pull,push""#,
        );
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].scheme, "Bearer");
        assert_eq!(c[0].params["realm"], "https://auth.docker.io/token");
        assert_eq!(c[0].params["service"], "registry.docker.io");
        assert_eq!(c[0].params["scope"], "repository:library/ubuntu:pull,push");

        let c = parse_challenges(r#"Basic realm="Registry Realm""#);
        assert_eq!(c[0].scheme, "Basic");
        assert_eq!(c[0].params["realm"], "Registry Realm");

        let c = parse_challenges(r#"Basic realm="a", Bearer realm="https://t/x",service=s"#);
        assert_eq!(c.len(), 2, "{c:?}");
        assert_eq!(c[1].scheme, "Bearer");
        assert_eq!(c[1].params["service"], "s");
    }

    #[test]
    fn scope_keys_are_order_independent() {
        let a = [Scope::push("x"), Scope::pull("y")];
        let b = [Scope::pull("y"), Scope::push("x")];
        assert_eq!(scope_key(&a), scope_key(&b));
        assert_eq!(Scope::push("x").to_string(), "repository:x:pull,push");
    }

    #[test]
    fn basic_header_is_sensitive() {
        let h = basic_header(&Credential::Basic { username: "u".into(), password: "p".into() });
        assert!(h.is_sensitive());
        assert_eq!(h.to_str().unwrap(), "Basic dTpw");
    }
}
