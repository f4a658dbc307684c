//! [`CodeRepoError`]: why a module, version or query has no answer, sorted by what the
//! proxy's edge must answer: 404 where the go command should fall back or give up (the module,
//! version or repository is missing, or the go command's rules refuse the version), 400 for a
//! malformed version, 5xx for a Git outage or refused credentials (never a 404: that would
//! send the go command to the next GOPROXY entry with a private path).

use http::StatusCode;

use crate::codehost::HostError;

/// Why [`CodeRepo`](super::CodeRepo) could not answer. Every message names the module, the
/// version or query when there is one, and the rule or the failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodeRepoError {
    /// The module, the version, the revision or the repository does not exist: 404.
    #[error("{}: {reason}", at(module, version.as_deref()))]
    NotFound {
        module: String,
        version: Option<String>,
        reason: String,
    },
    /// The version exists in the repository but the go command's rules refuse it for this
    /// module (a major-version mismatch, a missing or foreign go.mod, a pseudo-version that
    /// does not match its commit): 404, as the go command's own proxy answers; `malformed`
    /// (not a canonical semantic version where one is needed): 400.
    #[error("{module}@{version}: invalid {}: {reason}", if *pseudo { "pseudo-version" } else { "version" })]
    InvalidVersion {
        module: String,
        version: String,
        reason: String,
        pseudo: bool,
        malformed: bool,
    },
    /// The Git server failed, timed out or answered nonsense, or the local mirror failed: a
    /// 5xx, never 404.
    #[error("{}: Git repository {repository} unavailable: {reason} (the request can be retried)", at(module, version.as_deref()))]
    Unavailable {
        module: String,
        version: Option<String>,
        repository: String,
        reason: String,
    },
    /// The Git server refused the proxy's credentials (or its host key did not verify): a 5xx
    /// naming the module and repository, never the secret.
    #[error("{}: the Git server of {repository} refused modfleet's credentials: {reason} (check the credentials configured for this repository)", at(module, version.as_deref()))]
    Unauthorized {
        module: String,
        version: Option<String>,
        repository: String,
        reason: String,
    },
    /// A file or tree past a size limit (the go command's or the proxy's): 404, a property of
    /// the version that no retry changes.
    #[error("{}: too large: {reason}", at(module, version.as_deref()))]
    TooLarge {
        module: String,
        version: Option<String>,
        reason: String,
    },
}

fn at(module: &str, version: Option<&str>) -> String {
    match version {
        Some(v) => format!("{module}@{v}"),
        None => format!("module {module}"),
    }
}

impl CodeRepoError {
    /// The status the proxy answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            CodeRepoError::NotFound { .. } | CodeRepoError::TooLarge { .. } => {
                StatusCode::NOT_FOUND
            }
            CodeRepoError::InvalidVersion { malformed, .. } => {
                if *malformed {
                    StatusCode::BAD_REQUEST
                } else {
                    StatusCode::NOT_FOUND
                }
            }
            CodeRepoError::Unavailable { .. } | CodeRepoError::Unauthorized { .. } => {
                StatusCode::BAD_GATEWAY
            }
        }
    }

    /// A code host's failure while answering for `module` at `version`. A `NotFound` here
    /// is the version's: an unknown revision.
    pub(crate) fn from_host(
        e: HostError,
        module: &str,
        version: Option<&str>,
        repository: &str,
    ) -> CodeRepoError {
        let module = module.to_string();
        let version = version.map(str::to_string);
        let repository = repository.to_string();
        match e {
            HostError::NotFound(reason) => CodeRepoError::NotFound {
                module,
                version,
                reason,
            },
            HostError::Unauthorized(reason) => CodeRepoError::Unauthorized {
                module,
                version,
                repository,
                reason,
            },
            HostError::Unavailable(reason) => CodeRepoError::Unavailable {
                module,
                version,
                repository,
                reason,
            },
            HostError::Corrupt(reason) => CodeRepoError::Unavailable {
                module,
                version,
                repository,
                reason: format!("the repository or its mirror is damaged: {reason}"),
            },
            HostError::TooLarge(reason) => CodeRepoError::TooLarge {
                module,
                version,
                reason,
            },
        }
    }

    /// Whether this says the thing asked for does not exist (as go's `fs.ErrNotExist`).
    pub fn is_not_found(&self) -> bool {
        matches!(self, CodeRepoError::NotFound { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_keep_outages_away_from_404() {
        let repo = "https://git.example.com/r";
        let m = "git.example.com/r";
        let host = |e| CodeRepoError::from_host(e, m, Some("v1.0.0"), repo);
        assert_eq!(
            host(HostError::NotFound("unknown revision v1.0.0".into())).status(),
            404
        );
        for e in [
            HostError::Unavailable("timeout".into()),
            HostError::Corrupt("bad".into()),
            HostError::Unauthorized("401".into()),
        ] {
            let e = host(e);
            assert_eq!(e.status(), 502, "{e}");
            assert!(e.to_string().contains(repo), "{e}");
            assert!(e.to_string().contains("git.example.com/r@v1.0.0"), "{e}");
        }
        let invalid = |malformed| CodeRepoError::InvalidVersion {
            module: m.into(),
            version: "v2.0.0".into(),
            reason: "should be v0 or v1".into(),
            pseudo: false,
            malformed,
        };
        assert_eq!(invalid(false).status(), 404);
        assert_eq!(invalid(true).status(), 400);
        assert_eq!(
            invalid(false).to_string(),
            "git.example.com/r@v2.0.0: invalid version: should be v0 or v1"
        );
        let unauthorized = host(HostError::Unauthorized("HTTP 401".into())).to_string();
        assert!(unauthorized.contains("credentials"), "{unauthorized}");
    }
}
