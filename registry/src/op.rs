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

/// The URL without its query, which may carry upload state or signatures.
pub fn safe_url(url: &Url) -> String {
    format!("{}://{}{}", url.scheme(), url.host_str().unwrap_or(""), url.path())
}

#[cfg(test)]
mod tests {
    use super::*;

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
