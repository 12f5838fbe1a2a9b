//! What a request is for, and how its failure reads: an [`Op`] names the host,
//! repository and action, and makes the [`RegistryError`] of a failed response with
//! the registry's own error text.

use crate::error::{BoxError, RegistryError};
use reqwest::{Response, StatusCode, Url};

/// What a request was for, so that an error can say so: host, repository, action.
#[derive(Debug, Clone)]
pub struct Op {
    pub host: String,
    pub repository: String,
    pub action: String,
}

impl Op {
    pub fn error(&self, status: Option<StatusCode>, detail: impl Into<String>) -> RegistryError {
        RegistryError {
            host: self.host.clone(),
            repository: self.repository.clone(),
            action: self.action.clone(),
            status: status.map(|s| s.as_u16()),
            detail: detail.into(),
            source: None,
        }
    }

    /// An error of this op caused by `source` (a transport or storage failure).
    pub fn caused(&self, detail: impl Into<String>, source: impl Into<BoxError>) -> RegistryError {
        RegistryError { source: Some(source.into()), ..self.error(None, detail) }
    }

    /// `error` with `detail` in front, said once: an error of this same op (a retry
    /// giving up on its own last failure) gets the detail added to its own rather
    /// than repeating host, repository and action as its cause.
    pub fn wrap(&self, detail: impl Into<String>, error: crate::Error) -> crate::Error {
        match error {
            crate::Error::Registry(inner)
                if inner.host == self.host && inner.repository == self.repository && inner.action == self.action =>
            {
                let detail = format!("{}: {}", detail.into(), inner.detail);
                RegistryError { detail, ..inner }.into()
            }
            other => self.caused(detail, other).into(),
        }
    }

    /// The error for an unexpected response, with the registry's JSON error body.
    pub async fn status_error(&self, response: Response) -> RegistryError {
        let status = response.status();
        let body = crate::body::read_prefix(response, crate::body::MAX_SMALL_BODY).await;
        self.error(Some(status), describe_status(status, &body))
    }
}

/// `HTTP 404 Not Found: MANIFEST_UNKNOWN: manifest unknown`: the status and the
/// registry's `{"errors":[{"code","message"}]}` body, or a short excerpt of the text.
pub fn describe_status(status: StatusCode, body: &[u8]) -> String {
    let mut out = format!("HTTP {status}");
    #[derive(serde::Deserialize)]
    struct Errors {
        errors: Vec<ErrorEntry>,
    }
    #[derive(serde::Deserialize)]
    struct ErrorEntry {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    if let Ok(errors) = serde_json::from_slice::<Errors>(body)
        && !errors.errors.is_empty()
    {
        let parts: Vec<String> = errors
            .errors
            .iter()
            .map(|e| match (e.code.is_empty(), e.message.is_empty()) {
                (false, false) => format!("{}: {}", e.code, e.message),
                (false, true) => e.code.clone(),
                _ => e.message.clone(),
            })
            .collect();
        out.push_str(": ");
        out.push_str(&parts.join("; "));
        return out;
    }
    let text = String::from_utf8_lossy(body);
    let text: String = text.trim().chars().filter(|c| !c.is_control()).take(200).collect();
    if !text.is_empty() {
        out.push_str(": ");
        out.push_str(&text);
    }
    out
}

/// The URL without its query, which may carry upload state or signatures; with its
/// port, which tells one local registry from another.
pub fn safe_url(url: &Url) -> String {
    let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
    format!("{}://{}{port}{}", url.scheme(), url.host_str().unwrap_or(""), url.path())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_keep_their_port_and_drop_their_query() {
        let url = Url::parse("http://127.0.0.1:5000/v2/a/blobs/uploads/x?_state=secret").unwrap();
        assert_eq!(safe_url(&url), "http://127.0.0.1:5000/v2/a/blobs/uploads/x");
        assert_eq!(safe_url(&Url::parse("https://example.com/v2/").unwrap()), "https://example.com/v2/");
    }

    #[test]
    fn a_retry_giving_up_says_its_op_once() {
        let op = Op { host: "127.0.0.1:5000".into(), repository: "app".into(), action: "uploading blob to".into() };
        let last: crate::Error =
            op.caused("PUT http://127.0.0.1:5000/v2/app/blobs/uploads/x", "connection reset").into();
        let message = crate::error::chain(&op.wrap("giving up after 6 attempts", last));
        assert_eq!(
            message,
            "uploading blob to 127.0.0.1:5000/app: giving up after 6 attempts: \
             PUT http://127.0.0.1:5000/v2/app/blobs/uploads/x: connection reset"
        );
        let other = Op { action: "fetching a token for".into(), ..op.clone() };
        let message = crate::error::chain(&op.wrap("giving up", other.error(None, "HTTP 500").into()));
        assert_eq!(
            message,
            "uploading blob to 127.0.0.1:5000/app: giving up: fetching a token for 127.0.0.1:5000/app: HTTP 500"
        );
    }

    #[test]
    fn error_bodies_are_summarised() {
        let body = br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{}}]}"#;
        assert_eq!(
            describe_status(StatusCode::NOT_FOUND, body),
            "HTTP 404 Not Found: MANIFEST_UNKNOWN: manifest unknown"
        );
        assert_eq!(describe_status(StatusCode::BAD_GATEWAY, b"oops\n"), "HTTP 502 Bad Gateway: oops");
        assert_eq!(describe_status(StatusCode::NOT_FOUND, b""), "HTTP 404 Not Found");
    }
}
