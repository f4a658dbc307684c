//! go-get discovery (`cmd/go/internal/vcs/vcs.go`, `repoRootForImportDynamic` and
//! `discovery.go`): `GET https://PATH?go-get=1`, the `<meta name="go-import" content="PREFIX
//! VCS REPO [SUBDIR]">` tags of its head, the one whose prefix holds the path; when that
//! prefix is not the path itself, the prefix's own page must say the same. Only `git`
//! repositories are fetched; `mod` entries (a proxy) are ignored, as `vcs.IgnoreMod` does.
//! Every page is bounded in size and time; `http://` only with `insecure` (GOINSECURE).
//! The parsing is pure; [`discover`] is the I/O.

use std::time::Duration;

use super::Location;

/// Largest discovery page read (the go-import tags are in its head).
pub const MAX_PAGE_BYTES: usize = 1 << 20;
/// The longest one discovery request may take.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// One `go-import` meta tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaImport {
    pub prefix: String,
    pub vcs: String,
    pub repo_root: String,
    pub subdir: String,
}

/// Why discovery found no repository.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DiscoveryError {
    /// The page has no usable answer for the path (a 404 at our edge).
    #[error("{0}")]
    NotFound(String),
    /// The server could not be asked (a 5xx at our edge: a retry may succeed).
    #[error("{0}")]
    Unavailable(String),
}

/// `parseMetaGoImports`: the go-import tags of an HTML page, up to `<body>` or `</head>`.
pub fn parse_meta_go_imports(html: &str) -> Vec<MetaImport> {
    let mut out = Vec::new();
    let lower = html.to_ascii_lowercase();
    let mut at = 0;
    while let Some(open) = lower[at..].find('<') {
        let start = at + open + 1;
        let end = match lower[start..].find('>') {
            Some(e) => start + e,
            None => break,
        };
        let tag = &html[start..end];
        let name: String = tag
            .chars()
            .take_while(|c| !c.is_whitespace() && *c != '/')
            .collect::<String>()
            .to_ascii_lowercase();
        at = end + 1;
        match name.as_str() {
            "body" | "/head" => break,
            "meta" => {}
            _ => continue,
        }
        let attrs = attributes(&tag[name.len()..]);
        let get = |key: &str| {
            attrs
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(key))
                .map(|(_, v)| v.as_str())
        };
        if get("name") != Some("go-import") {
            continue;
        }
        let fields: Vec<&str> = get("content").unwrap_or("").split_whitespace().collect();
        if fields.len() == 3 || fields.len() == 4 {
            out.push(MetaImport {
                prefix: fields[0].to_string(),
                vcs: fields[1].to_string(),
                repo_root: fields[2].to_string(),
                subdir: fields.get(3).unwrap_or(&"").to_string(),
            });
        }
    }
    out
}

/// The attributes of a tag: `key="v"`, `key='v'`, `key=v`, `key`; entities decoded.
fn attributes(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        while i < b.len() && (b[i].is_ascii_whitespace() || b[i] == b'/') {
            i += 1;
        }
        let k0 = i;
        while i < b.len() && !b[i].is_ascii_whitespace() && b[i] != b'=' && b[i] != b'/' {
            i += 1;
        }
        let key = &s[k0..i];
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        let mut value = String::new();
        if i < b.len() && b[i] == b'=' {
            i += 1;
            while i < b.len() && b[i].is_ascii_whitespace() {
                i += 1;
            }
            if i < b.len() && (b[i] == b'"' || b[i] == b'\'') {
                let q = b[i];
                let v0 = i + 1;
                i = v0;
                while i < b.len() && b[i] != q {
                    i += 1;
                }
                value = decode_entities(&s[v0..i.min(b.len())]);
                i += 1;
            } else {
                let v0 = i;
                while i < b.len() && !b[i].is_ascii_whitespace() {
                    i += 1;
                }
                value = decode_entities(&s[v0..i]);
            }
        }
        if !key.is_empty() {
            out.push((key.to_string(), value));
        }
    }
    out
}

fn decode_entities(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&#34;", "\"")
        .replace("&amp;", "&")
}

/// `matchGoImport`: the one tag whose prefix holds `module` (`mod` entries ignored); an
/// error when none does or several do.
pub fn match_go_import(imports: &[MetaImport], module: &str) -> Result<MetaImport, DiscoveryError> {
    let mut found: Option<&MetaImport> = None;
    for im in imports.iter().filter(|im| im.vcs != "mod") {
        if !has_path_prefix(module, &im.prefix) {
            continue;
        }
        if found.is_some() {
            return Err(DiscoveryError::NotFound(format!(
                "multiple meta tags match import path {module:?}"
            )));
        }
        found = Some(im);
    }
    found.cloned().ok_or_else(|| {
        DiscoveryError::NotFound(format!(
            "no go-import meta tag for {module} (found {} other)",
            imports.len()
        ))
    })
}

/// The location a matched tag gives, checked: `git` only, an allowed URL scheme, a
/// subdirectory as the go command takes it ([`subdirectory`]).
pub fn location(im: &MetaImport, insecure: bool) -> Result<Location, DiscoveryError> {
    if im.vcs != "git" {
        return Err(DiscoveryError::NotFound(format!(
            "{}: version control system {:?} is not supported (only git)",
            im.prefix, im.vcs
        )));
    }
    let scheme = im.repo_root.split_once("://").map(|(s, _)| s);
    let allowed = match scheme {
        Some("https" | "ssh") => true,
        Some("http") => insecure,
        _ => false,
    };
    if !allowed {
        return Err(DiscoveryError::NotFound(format!(
            "{}: repository {:?} refused: only https:// and ssh:// (http:// with insecure)",
            im.prefix,
            crate::codehost::sanitize(&crate::codehost::display_url(&im.repo_root), 200)
        )));
    }
    Ok(Location {
        url: im.repo_root.clone(),
        root: im.prefix.clone(),
        subdir: subdirectory(im)?,
    })
}

/// The tag's fourth field as the go command uses it: `validateRepoSubDir` refuses a leading
/// `/` or `-`, and `newCodeRepo` joins it to the module's directory with `filepath.Join`,
/// which cleans it (`go/` and `./go` are `go`; `.` is the repository root). A subdirectory
/// that climbs out (`..`) is refused: nothing of the repository is there.
fn subdirectory(im: &MetaImport) -> Result<String, DiscoveryError> {
    let refuse = |why: &str| {
        DiscoveryError::NotFound(format!(
            "{}: invalid subdirectory {:?} in its go-import tag: {why}",
            im.prefix,
            crate::codehost::sanitize(&im.subdir, 200)
        ))
    };
    match im.subdir.as_bytes().first() {
        None => return Ok(String::new()),
        Some(b'/') => return Err(refuse("leading slash")),
        Some(b'-') => return Err(refuse("leading hyphen")),
        Some(_) => {}
    }
    let mut elems: Vec<&str> = Vec::new();
    for elem in im.subdir.split('/') {
        match elem {
            "" | "." => {}
            ".." if elems.pop().is_some() => {}
            ".." => return Err(refuse("it leads out of the repository")),
            _ => elems.push(elem),
        }
    }
    Ok(elems.join("/"))
}

fn has_path_prefix(s: &str, prefix: &str) -> bool {
    s == prefix || (s.starts_with(prefix) && s.as_bytes().get(prefix.len()) == Some(&b'/'))
}

/// `repoRootForImportDynamic` for `module`: its page, then the matched prefix's page when the
/// prefix is shorter, whose tag for `module` (the module's, not the prefix's: a second tag
/// there that holds the module too makes two, and a refusal) must be the same.
/// `page_url` turns a path into the URL asked (`https://PATH?go-get=1`; tests point it at a
/// local server).
pub async fn discover(
    client: &reqwest::Client,
    module: &str,
    insecure: bool,
    page_url: &(dyn Fn(&str, &str) -> String + Send + Sync),
) -> Result<Location, DiscoveryError> {
    let imports = fetch_imports(client, module, insecure, page_url).await?;
    let im = match_go_import(&imports, module)?;
    if im.prefix != module {
        let again = fetch_imports(client, &im.prefix, insecure, page_url).await?;
        if match_go_import(&again, module).ok().as_ref() != Some(&im) {
            return Err(DiscoveryError::NotFound(format!(
                "{module}: the go-import tags of its page and of {}'s page disagree",
                im.prefix
            )));
        }
    }
    location(&im, insecure)
}

/// The go-import tags of `path`'s page: https, then http when `insecure` and https failed.
async fn fetch_imports(
    client: &reqwest::Client,
    path: &str,
    insecure: bool,
    page_url: &(dyn Fn(&str, &str) -> String + Send + Sync),
) -> Result<Vec<MetaImport>, DiscoveryError> {
    let mut last = None;
    let schemes: &[&str] = if insecure {
        &["https", "http"]
    } else {
        &["https"]
    };
    for scheme in schemes {
        let url = page_url(scheme, path);
        match tokio::time::timeout(DEADLINE, fetch_page(client, &url)).await {
            Ok(Ok(page)) => return Ok(parse_meta_go_imports(&page)),
            Ok(Err(e)) => last = Some(e),
            Err(_) => {
                last = Some(DiscoveryError::Unavailable(format!(
                    "{url}: no answer within {}s",
                    DEADLINE.as_secs()
                )))
            }
        }
    }
    Err(last.expect("at least one scheme"))
}

async fn fetch_page(client: &reqwest::Client, url: &str) -> Result<String, DiscoveryError> {
    let unavailable = |e: String| DiscoveryError::Unavailable(format!("{url}: {e}"));
    let mut response = client
        .get(url)
        .send()
        .await
        .map_err(|e| unavailable(e.to_string()))?;
    let status = response.status();
    if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
        return Err(unavailable(format!("HTTP {status}")));
    }
    // The go command reads the page whatever its status (a 404 page may carry the tags).
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| unavailable(e.to_string()))?
    {
        let room = MAX_PAGE_BYTES - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= MAX_PAGE_BYTES {
            break;
        }
    }
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// The client discovery uses: bounded redirects, never from https to http unless allowed.
pub fn client(insecure: bool) -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .timeout(DEADLINE)
        .redirect(reqwest::redirect::Policy::custom(move |attempt| {
            let to_http = attempt.url().scheme() == "http";
            if attempt.previous().len() >= 10 {
                attempt.error("more than 10 redirects")
            } else if !(attempt.url().scheme() == "https" || (to_http && insecure)) {
                attempt.error("redirect to a non-https URL refused (set insecure for http)")
            } else {
                attempt.follow()
            }
        }))
        .user_agent(concat!("modfleet-proxy/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("an HTTP client with rustls")
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = r#"<!DOCTYPE html><html><HEAD>
<meta name="go-import" content="git.corp.example/team/lib git https://git.corp.example/team/lib.git">
<META NAME=go-import CONTENT='git.corp.example/mod mod https://proxy.example'>
<meta name="go-import" content="too few">
<meta name="go-source" content="x y z w">
<meta name="go-import" content="git.corp.example/mono git ssh://git@git.corp.example/mono.git go/sub">
</head><body><meta name="go-import" content="git.corp.example/late git https://late"></body></html>"#;

    #[test]
    fn meta_tags_are_read_from_the_head_only() {
        let imports = parse_meta_go_imports(PAGE);
        let prefixes: Vec<&str> = imports.iter().map(|i| i.prefix.as_str()).collect();
        assert_eq!(
            prefixes,
            [
                "git.corp.example/team/lib",
                "git.corp.example/mod",
                "git.corp.example/mono"
            ]
        );
        assert_eq!(imports[2].subdir, "go/sub");
        let im = match_go_import(&imports, "git.corp.example/team/lib/v2").unwrap();
        assert_eq!(
            location(&im, false).unwrap(),
            Location {
                url: "https://git.corp.example/team/lib.git".into(),
                root: "git.corp.example/team/lib".into(),
                subdir: String::new(),
            }
        );
        assert!(match_go_import(&imports, "git.corp.example/team/library").is_err());
        // `mod` entries are ignored.
        assert!(match_go_import(&imports, "git.corp.example/mod/x").is_err());
    }

    #[test]
    fn ambiguous_and_unsafe_answers_are_refused() {
        let im = |prefix: &str, vcs: &str, repo: &str| MetaImport {
            prefix: prefix.into(),
            vcs: vcs.into(),
            repo_root: repo.into(),
            subdir: String::new(),
        };
        let two = [
            im("a.example/x", "git", "https://a"),
            im("a.example", "git", "https://b"),
        ];
        let e = match_go_import(&two, "a.example/x/y").unwrap_err();
        assert!(e.to_string().contains("multiple meta tags"), "{e}");
        assert!(location(&im("a.example", "hg", "https://a/r"), false).is_err());
        assert!(location(&im("a.example", "git", "http://a/r"), false).is_err());
        assert!(location(&im("a.example", "git", "http://a/r"), true).is_ok());
        assert!(location(&im("a.example", "git", "file:///etc"), true).is_err());
        assert!(location(&im("a.example", "git", "/local/path"), true).is_err());
    }

    /// The fourth field as the go command takes it (vcs.go `validateRepoSubDir`, then
    /// `filepath.Join` in `newCodeRepo`); Go 1.26 accepts `go/` and `./go` as `go`.
    #[test]
    fn subdirectories_are_checked_and_cleaned_as_the_go_command_does() {
        let subdir = |s: &str| {
            let tag = MetaImport {
                prefix: "a.example/m".into(),
                vcs: "git".into(),
                repo_root: "https://a.example/r.git".into(),
                subdir: s.into(),
            };
            location(&tag, false).map(|l| l.subdir)
        };
        for (given, used) in [
            ("", ""),
            ("go", "go"),
            ("go/", "go"),
            ("./go", "go"),
            ("sdk//go/.", "sdk/go"),
            ("x/../go", "go"),
            (".", ""),
        ] {
            assert_eq!(subdir(given), Ok(used.to_string()), "{given:?}");
        }
        for (given, why) in [
            ("/go", "leading slash"),
            ("-go", "leading hyphen"),
            ("..", "out of the repository"),
            ("go/../../x", "out of the repository"),
        ] {
            let e = subdir(given).unwrap_err();
            assert!(matches!(e, DiscoveryError::NotFound(_)), "{given:?}: {e}");
            assert!(e.to_string().contains(why), "{given:?}: {e}");
        }
    }

    /// The I/O half against a real local HTTP server: the path's page, then its prefix's.
    #[tokio::test]
    async fn discovery_asks_the_page_and_checks_the_prefix_page() {
        use axum::Router;
        use axum::routing::get;
        let page = |prefix: &'static str| {
            format!(
                "<html><head><meta name=\"go-import\" content=\"{prefix} git https://git.example/r.git\"></head></html>"
            )
        };
        let pages = Router::new()
            .route(
                "/corp.example/lib/sub",
                get(move || async move { page("corp.example/lib") }),
            )
            .route(
                "/corp.example/lib",
                get(move || async move { page("corp.example/lib") }),
            )
            .route(
                "/corp.example/liar/sub",
                get(move || async move { page("corp.example/liar") }),
            )
            .route(
                "/corp.example/liar",
                get(move || async move { page("corp.example/other") }),
            )
            .route(
                "/corp.example/extra/sub",
                get(move || async move { page("corp.example/extra") }),
            )
            .route(
                "/corp.example/extra",
                get(move || async move {
                    page("corp.example/extra").replace(
                        "</head>",
                        "<meta name=\"go-import\" content=\"corp.example/extra/sub git https://git.example/r.git\"></head>",
                    )
                }),
            )
            .route(
                "/corp.example/big",
                get(|| async { "x".repeat(3 * MAX_PAGE_BYTES) }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, pages).await });
        let base = move |_scheme: &str, path: &str| format!("http://{addr}/{path}?go-get=1");
        let c = client(true);
        let l = discover(&c, "corp.example/lib/sub", true, &base)
            .await
            .unwrap();
        assert_eq!(l.root, "corp.example/lib");
        assert_eq!(l.url, "https://git.example/r.git");
        let e = discover(&c, "corp.example/liar/sub", true, &base)
            .await
            .unwrap_err();
        assert!(matches!(e, DiscoveryError::NotFound(_)), "{e}");
        // The prefix page's tags are matched against the module path, as the go command
        // matches them: a second tag holding the module there is a disagreement, although
        // the prefix's own tag is the same.
        let e = discover(&c, "corp.example/extra/sub", true, &base)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("disagree"), "{e}");
        assert_eq!(
            discover(&c, "corp.example/extra", true, &base)
                .await
                .unwrap()
                .root,
            "corp.example/extra"
        );
        let e = discover(&c, "corp.example/big", true, &base)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("no go-import meta tag"), "{e}");
        let dead = |_: &str, path: &str| format!("http://127.0.0.1:1/{path}?go-get=1");
        let e = discover(&c, "corp.example/lib", true, &dead)
            .await
            .unwrap_err();
        assert!(matches!(e, DiscoveryError::Unavailable(_)), "{e}");
    }
}
