//! Client authentication and authorization (`access` in the config file): who is asking
//! ([`Access::authenticate`]: a token from the tokens files, presented as Bearer or as Basic's
//! password) and whether they may have it ([`Access::authorize`], [`Access::authorize_admin`]).
//! Decisions are pure; the only I/O is reading the tokens files ([`tokens`]).
//!
//! How a request is governed:
//! - wrong credentials (malformed, unknown token, a Basic user that is not the token's
//!   identity) are a 401 on every path, even one open to `anonymous`: a client that means to
//!   authenticate must learn that its token does not work;
//! - a module request (list, `.info`, `.mod`, `.zip`, `@latest`) is decided by the first rule
//!   whose pattern matches its module path; no rule matching is a refusal;
//! - anything else (`/sumdb/...`, `/`, a path that is not a GOPROXY path, another method) is
//!   allowed to whoever some rule admits: checksum database answers are public data, and an
//!   error page tells nothing of the modules behind it;
//! - a refusal is a 401 when the caller has no credentials (the go command then asks GOAUTH
//!   and its netrc), a 403 when it has an identity that is not allowed. Neither is a 404,
//!   so the go command does not fall back to the next GOPROXY entry.

pub mod presented;
pub mod tokens;

use std::collections::HashSet;
use std::sync::{Arc, RwLock};

use http::HeaderMap;
use modfleet_contract::access::Principal;

use crate::config::ModulePattern;
pub use presented::{Malformed, Presented};
pub use tokens::{Identity, TokenSet, TokenStore, TokensError};

/// One validated rule: the first whose pattern matches a module path decides.
#[derive(Debug, Clone)]
pub struct Rule {
    pub modules: Vec<ModulePattern>,
    pub allow: Vec<Principal>,
}

/// Who is asking.
#[derive(Debug, Clone)]
pub enum Caller {
    /// No credentials.
    Anonymous,
    Identified(Arc<Identity>),
}

const ANONYMOUS: &str = "anonymous";

impl Caller {
    /// The identity's name, or `anonymous`.
    pub fn name(&self) -> &str {
        match self {
            Caller::Anonymous => ANONYMOUS,
            Caller::Identified(id) => &id.name,
        }
    }

    /// Whether a principal names this caller.
    pub fn is(&self, principal: &Principal) -> bool {
        match (principal, self) {
            (Principal::Anonymous, _) => true,
            (_, Caller::Anonymous) => false,
            (Principal::Authenticated, Caller::Identified(_)) => true,
            (Principal::Group(g), Caller::Identified(id)) => id.groups.contains(g),
            (Principal::Identity(n), Caller::Identified(id)) => &id.name == n,
        }
    }

    fn any(&self, principals: &[Principal]) -> bool {
        principals.iter().any(|p| self.is(p))
    }
}

/// What a request asks for, as far as access is concerned.
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    /// A module request: its module path.
    Module(&'a str),
    /// Anything else on the GOPROXY port (checksum database, errors, `/`).
    Other,
}

/// A refused request: its status, the reason counted in metrics, and the one line the
/// client gets (the go command prints it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// true: 401 (no or wrong credentials); false: 403 (an identity not allowed).
    pub unauthorized: bool,
    /// `missing_credentials`, `malformed_credentials`, `unknown_token`, `user_mismatch`,
    /// `not_allowed`, `not_admin`.
    pub reason: &'static str,
    pub message: String,
}

/// Sent with every 401: the go command's netrc credentials are Basic, a GOAUTH helper may send
/// either.
pub const CHALLENGES: [&str; 2] = ["Basic realm=\"modfleet\"", "Bearer realm=\"modfleet\""];

const HOW: &str = "present a token from this proxy's tokens files: Basic with your identity \
                   as user and the token as password (.netrc), or Bearer (GOAUTH)";

/// The access policy of a running proxy.
#[derive(Debug)]
pub struct Access {
    pub rules: Vec<Rule>,
    pub admin: Vec<Principal>,
    pub tokens: Arc<TokenStore>,
    labels: IdentityLabels,
}

impl Access {
    pub fn new(rules: Vec<Rule>, admin: Vec<Principal>, tokens: TokenStore) -> Access {
        Access {
            rules,
            admin,
            tokens: Arc::new(tokens),
            labels: IdentityLabels::default(),
        }
    }

    /// Who presents these headers, against the tokens read last.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Caller, Refusal> {
        authenticate(&self.tokens.current(), headers)
    }

    /// Whether `caller` may have `target` on the GOPROXY port.
    pub fn authorize(&self, caller: &Caller, target: Target<'_>) -> Result<(), Refusal> {
        authorize(&self.rules, caller, target)
    }

    /// Whether `caller` may use the admin port's `/status` and `/admin/*`.
    pub fn authorize_admin(&self, caller: &Caller) -> Result<(), Refusal> {
        if caller.any(&self.admin) {
            return Ok(());
        }
        Err(match caller {
            Caller::Anonymous => missing("the admin port's /status and /admin/*"),
            Caller::Identified(id) => Refusal {
                unauthorized: false,
                reason: "not_admin",
                message: format!(
                    "identity {} may not use /status and /admin/*: it is not in access.admin",
                    id.name
                ),
            },
        })
    }

    /// The caller's name as a metric label: one of the first [`MAX_IDENTITY_LABELS`]
    /// identities seen, `anonymous`, or [`OTHER_IDENTITIES`].
    pub fn label(&self, caller: &Caller) -> String {
        self.labels.of(caller.name())
    }
}

/// Whose names get a metric label of their own; later identities share [`OTHER_IDENTITIES`].
pub const MAX_IDENTITY_LABELS: usize = 100;
/// The label of identities past [`MAX_IDENTITY_LABELS`]: not a valid identity name.
pub const OTHER_IDENTITIES: &str = "(other)";

/// Names given a label so far. Read-locked on every request; written once per new name.
#[derive(Debug, Default)]
struct IdentityLabels(RwLock<HashSet<String>>);

impl IdentityLabels {
    fn of(&self, name: &str) -> String {
        if name == ANONYMOUS
            || self
                .0
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .contains(name)
        {
            return name.to_string();
        }
        let mut seen = self.0.write().unwrap_or_else(|p| p.into_inner());
        if seen.contains(name) {
            return name.to_string();
        }
        if seen.len() < MAX_IDENTITY_LABELS {
            seen.insert(name.to_string());
            return name.to_string();
        }
        OTHER_IDENTITIES.to_string()
    }
}

fn missing(what: &str) -> Refusal {
    Refusal {
        unauthorized: true,
        reason: "missing_credentials",
        message: format!("authentication required for {what}: {HOW}"),
    }
}

/// The caller of a request, given the current tokens.
pub fn authenticate(tokens: &TokenSet, headers: &HeaderMap) -> Result<Caller, Refusal> {
    let wrong = |reason, message: String| Refusal {
        unauthorized: true,
        reason,
        message,
    };
    let (user, token) = match presented::presented(headers) {
        Ok(Presented::None) => return Ok(Caller::Anonymous),
        Ok(Presented::Bearer(token)) => (None, token),
        Ok(Presented::Basic { user, token }) => (Some(user), token),
        Err(e) => return Err(wrong("malformed_credentials", e.to_string())),
    };
    let Some(id) = tokens.identify(&token) else {
        return Err(wrong(
            "unknown_token",
            "the token is not valid here (unknown, or rotated out): ask for a new one".into(),
        ));
    };
    if user.is_some_and(|u| u != id.name) {
        return Err(wrong(
            "user_mismatch",
            "the Basic user name is not the identity this token belongs to: use the identity \
             of its tokens-file line as the login"
                .into(),
        ));
    }
    Ok(Caller::Identified(id.clone()))
}

/// The decision of the rules for `target`.
pub fn authorize(rules: &[Rule], caller: &Caller, target: Target<'_>) -> Result<(), Refusal> {
    let allowed = match target {
        Target::Module(module) => rules
            .iter()
            .find(|r| r.modules.iter().any(|p| p.matches(module)))
            .is_some_and(|r| caller.any(&r.allow)),
        Target::Other => rules.iter().any(|r| caller.any(&r.allow)),
    };
    if allowed {
        return Ok(());
    }
    let (what, verb) = match target {
        Target::Module(module) => (format!("module {module}"), "fetch"),
        Target::Other => ("this proxy".to_string(), "use"),
    };
    Err(match caller {
        Caller::Anonymous => missing(&what),
        Caller::Identified(id) => Refusal {
            unauthorized: false,
            reason: "not_allowed",
            message: format!(
                "identity {} may not {verb} {what}: no access rule allows it",
                id.name
            ),
        },
    })
}

#[cfg(test)]
mod tests;
