//! Building the object-store client from `objectStore` (see the README, "Shared object
//! store"): the URL's scheme picks S3, GCS or Azure; credentials come from files. Everything
//! here is checked at start, so a typo or a missing Secret stops the start with the fix in
//! the message instead of failing every request later.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use modfleet_contract::config::{ObjectStoreConfig, ObjectStoreCredentialsConfig};
use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::{ClientOptions, ObjectStore, RetryConfig};
use reqwest::Url;

/// Why the store cannot be used; each says what to change.
#[derive(Debug, thiserror::Error)]
pub enum StoreConfigError {
    #[error(
        "invalid objectStore.url {url:?}: {reason}; use s3://BUCKET/PREFIX, gs://BUCKET/PREFIX \
         or az://CONTAINER/PREFIX"
    )]
    Url { url: String, reason: String },
    #[error(
        "invalid objectStore.endpoint {endpoint:?}: {reason}; use http(s)://HOST[:PORT] (an \
         http:// endpoint also needs allowHttp: true)"
    )]
    Endpoint { endpoint: String, reason: String },
    #[error(
        "cannot read objectStore.credentials.{key} {path}: {source}; mount the Secret there or \
         fix the path"
    )]
    CredentialsFile {
        key: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("objectStore.credentials.{key} {path} is empty; put the key in the file")]
    EmptyCredentialsFile { key: &'static str, path: PathBuf },
    #[error("invalid objectStore.credentials for {scheme}://: {reason}")]
    Credentials { scheme: String, reason: String },
    #[error("invalid objectStore.timeout: it must be above zero")]
    Timeout,
    #[error("cannot set up the object store {url}: {source}")]
    Build {
        url: String,
        source: object_store::Error,
    },
}

/// The client, and where in the bucket the tier's objects go.
pub struct Opened {
    pub store: Arc<dyn ObjectStore>,
    /// The URL's path, without slashes at either end (empty: the bucket's root).
    pub prefix: String,
}

/// Builds the client for `config` (no request is sent).
pub fn open(config: &ObjectStoreConfig, deadline: Duration) -> Result<Opened, StoreConfigError> {
    let bad_url = |reason: &str| StoreConfigError::Url {
        url: config.url.clone(),
        reason: reason.to_string(),
    };
    let url = Url::parse(&config.url).map_err(|e| bad_url(&e.to_string()))?;
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad_url("it names no bucket"));
    }
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        return Err(bad_url(
            "it may not have a query, a fragment or credentials (they are files)",
        ));
    }
    // From the text as written: the URL parser would resolve `..` and `.` away.
    let raw_path = config
        .url
        .split_once("://")
        .and_then(|(_, rest)| rest.split_once('/'))
        .map_or("", |(_, path)| path);
    let prefix = url.path().trim_matches('/').to_string();
    let bad_segment = |s: &str| s == "." || s == ".." || s.eq_ignore_ascii_case("%2e%2e");
    if raw_path.trim_matches('/').split('/').any(bad_segment) || prefix.contains("//") {
        return Err(bad_url("its prefix has an empty, `.` or `..` segment"));
    }
    let timeout = config.timeout.get();
    if timeout.is_zero() {
        return Err(StoreConfigError::Timeout);
    }
    if let Some(endpoint) = &config.endpoint {
        check_endpoint(endpoint, config.allow_http)?;
    }
    // connect and headers: `timeout` (also enforced around each call); a whole request, body
    // included: the request deadline (a large zip may take longer than `timeout`).
    let options = ClientOptions::new()
        .with_allow_http(config.allow_http)
        .with_connect_timeout(timeout)
        .with_timeout(deadline.max(timeout));
    // One quick retry inside the library at most: the breaker and the upstreams are the
    // fallback, and a client must never wait out a long retry schedule.
    let retry = RetryConfig {
        max_retries: 1,
        retry_timeout: timeout,
        ..RetryConfig::default()
    };
    let creds = config.credentials.clone().unwrap_or_default();
    let bucket_url = format!("{}://{}", url.scheme(), url.host_str().unwrap_or_default());
    let build = |source| StoreConfigError::Build {
        url: config.url.clone(),
        source,
    };
    let scheme = url.scheme().to_string();
    let store: Arc<dyn ObjectStore> = match scheme.as_str() {
        "s3" => {
            only(&scheme, &creds, &["s3"])?;
            let mut b = AmazonS3Builder::from_env()
                .with_url(&bucket_url)
                .with_client_options(options)
                .with_retry(retry)
                .with_allow_http(config.allow_http);
            if let Some(region) = &config.region {
                b = b.with_region(region);
            }
            if let Some(endpoint) = &config.endpoint {
                b = b.with_endpoint(endpoint);
            }
            match (&creds.access_key_id_file, &creds.secret_access_key_file) {
                (Some(id), Some(secret)) => {
                    b = b
                        .with_access_key_id(read_key("accessKeyIdFile", id)?)
                        .with_secret_access_key(read_key("secretAccessKeyFile", secret)?);
                    if let Some(token) = &creds.session_token_file {
                        b = b.with_token(read_key("sessionTokenFile", token)?);
                    }
                }
                (None, None) if creds.session_token_file.is_none() => {}
                _ => {
                    return Err(StoreConfigError::Credentials {
                        scheme,
                        reason: "accessKeyIdFile and secretAccessKeyFile go together \
                                 (sessionTokenFile needs both)"
                            .into(),
                    });
                }
            }
            Arc::new(b.build().map_err(build)?)
        }
        "gs" => {
            only(&scheme, &creds, &["gs"])?;
            if config.region.is_some() || config.endpoint.is_some() {
                return Err(bad_url("region and endpoint are for s3:// stores"));
            }
            let mut b = GoogleCloudStorageBuilder::from_env()
                .with_url(&bucket_url)
                .with_client_options(options)
                .with_retry(retry);
            if let Some(key) = &creds.service_account_key_file {
                b = b.with_service_account_key(read_key("serviceAccountKeyFile", key)?);
            }
            Arc::new(b.build().map_err(build)?)
        }
        "az" | "azure" => {
            only(&scheme, &creds, &["az"])?;
            if config.region.is_some() {
                return Err(bad_url("region is for s3:// stores"));
            }
            let mut b = MicrosoftAzureBuilder::from_env()
                .with_container_name(url.host_str().unwrap_or_default())
                .with_client_options(options)
                .with_retry(retry)
                .with_allow_http(config.allow_http);
            if let Some(endpoint) = &config.endpoint {
                b = b.with_endpoint(endpoint.clone());
            }
            if let Some(account) = &creds.account_name {
                b = b.with_account(account);
            }
            if let Some(key) = &creds.access_key_file {
                b = b.with_access_key(read_key("accessKeyFile", key)?);
            }
            Arc::new(b.build().map_err(build)?)
        }
        other => return Err(bad_url(&format!("unknown scheme {other}://"))),
    };
    Ok(Opened { store, prefix })
}

/// Refuses credentials keys of another kind of store (a likely copy-paste mistake).
fn only(
    scheme: &str,
    c: &ObjectStoreCredentialsConfig,
    kind: &[&str],
) -> Result<(), StoreConfigError> {
    let s3 = c.access_key_id_file.is_some()
        || c.secret_access_key_file.is_some()
        || c.session_token_file.is_some();
    let gs = c.service_account_key_file.is_some();
    let az = c.account_name.is_some() || c.access_key_file.is_some();
    let foreign = [("s3", s3), ("gs", gs), ("az", az)]
        .iter()
        .any(|(k, set)| *set && !kind.contains(k));
    if foreign {
        return Err(StoreConfigError::Credentials {
            scheme: scheme.to_string(),
            reason: "these keys are for another kind of store: s3:// takes accessKeyIdFile, \
                     secretAccessKeyFile, sessionTokenFile; gs:// serviceAccountKeyFile; az:// \
                     accountName, accessKeyFile"
                .into(),
        });
    }
    Ok(())
}

fn check_endpoint(endpoint: &str, allow_http: bool) -> Result<(), StoreConfigError> {
    let bad = |reason: &str| StoreConfigError::Endpoint {
        endpoint: endpoint.to_string(),
        reason: reason.to_string(),
    };
    let url = Url::parse(endpoint).map_err(|e| bad(&e.to_string()))?;
    match url.scheme() {
        "https" => Ok(()),
        "http" if allow_http => Ok(()),
        "http" => Err(bad("plain http needs allowHttp: true")),
        other => Err(bad(&format!("unknown scheme {other}://"))),
    }
}

/// A key from a file, trimmed (a Secret's value often ends with a newline).
fn read_key(key: &'static str, path: &Path) -> Result<String, StoreConfigError> {
    let text =
        std::fs::read_to_string(path).map_err(|source| StoreConfigError::CredentialsFile {
            key,
            path: path.to_path_buf(),
            source,
        })?;
    let text = text.trim();
    if text.is_empty() {
        return Err(StoreConfigError::EmptyCredentialsFile {
            key,
            path: path.to_path_buf(),
        });
    }
    Ok(text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(url: &str) -> ObjectStoreConfig {
        ObjectStoreConfig {
            region: Some("us-east-1".into()),
            ..ObjectStoreConfig::new(url)
        }
    }

    fn err(c: &ObjectStoreConfig) -> String {
        match open(c, Duration::from_secs(60)) {
            Ok(_) => panic!("{c:?} was accepted"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn the_prefix_is_the_urls_path() {
        let o = open(&config("s3://modules/fleet/a/"), Duration::from_secs(60)).unwrap();
        assert_eq!(o.prefix, "fleet/a");
        let o = open(&config("s3://modules"), Duration::from_secs(60)).unwrap();
        assert_eq!(o.prefix, "");
    }

    /// GCS and Azure build from their URLs too (no request is sent at start).
    #[test]
    fn gcs_and_azure_stores_build() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("key");
        std::fs::write(&key, "a2V5\n").unwrap();
        let az = ObjectStoreConfig {
            credentials: Some(ObjectStoreCredentialsConfig {
                account_name: Some("modfleet".into()),
                access_key_file: Some(key),
                ..ObjectStoreCredentialsConfig::default()
            }),
            ..ObjectStoreConfig::new("az://modules/fleet")
        };
        let o = open(&az, Duration::from_secs(60)).unwrap();
        assert_eq!(o.prefix, "fleet");
        let o = open(
            &ObjectStoreConfig::new("gs://modules/fleet"),
            Duration::from_secs(60),
        );
        assert_eq!(
            o.map(|o| o.prefix).map_err(|e| e.to_string()),
            Ok("fleet".into())
        );
        let e = err(&ObjectStoreConfig {
            region: Some("x".into()),
            ..ObjectStoreConfig::new("gs://modules/fleet")
        });
        assert!(e.contains("region and endpoint are for s3://"), "{e}");
    }

    #[test]
    fn bad_urls_say_what_to_write() {
        let e = err(&config("http://modules/x"));
        assert!(
            e.contains("unknown scheme http://") && e.contains("s3://BUCKET"),
            "{e}"
        );
        let e = err(&config("modules/x"));
        assert!(e.contains("use s3://BUCKET/PREFIX"), "{e}");
        let e = err(&config("s3://modules/a/../b"));
        assert!(e.contains("`..`"), "{e}");
        let e = err(&config("s3://key:secret@modules/a"));
        assert!(e.contains("credentials (they are files)"), "{e}");
    }

    #[test]
    fn plain_http_endpoints_need_permission() {
        let mut c = config("s3://modules");
        c.endpoint = Some("http://127.0.0.1:9000".into());
        let e = err(&c);
        assert!(e.contains("allowHttp: true"), "{e}");
        c.allow_http = true;
        open(&c, Duration::from_secs(60)).unwrap();
    }

    #[test]
    fn a_missing_credentials_file_names_the_key_and_the_fix() {
        let mut c = config("s3://modules");
        c.credentials = Some(ObjectStoreCredentialsConfig {
            access_key_id_file: Some("/nonexistent/modfleet/id".into()),
            secret_access_key_file: Some("/nonexistent/modfleet/secret".into()),
            ..ObjectStoreCredentialsConfig::default()
        });
        let e = err(&c);
        assert!(
            e.contains("objectStore.credentials.accessKeyIdFile /nonexistent/modfleet/id")
                && e.contains("mount the Secret there"),
            "{e}"
        );
        c.credentials = Some(ObjectStoreCredentialsConfig {
            access_key_id_file: Some("/nonexistent/modfleet/id".into()),
            ..ObjectStoreCredentialsConfig::default()
        });
        let e = err(&c);
        assert!(e.contains("go together"), "{e}");
        c.credentials = Some(ObjectStoreCredentialsConfig {
            service_account_key_file: Some("/x".into()),
            ..ObjectStoreCredentialsConfig::default()
        });
        let e = err(&c);
        assert!(e.contains("another kind of store"), "{e}");
    }

    #[test]
    fn keys_are_read_trimmed_and_must_not_be_empty() {
        let dir = tempfile::tempdir().unwrap();
        let (id, secret) = (dir.path().join("id"), dir.path().join("secret"));
        std::fs::write(&id, "AKIDEXAMPLE\n").unwrap();
        std::fs::write(&secret, "\n").unwrap();
        assert_eq!(read_key("accessKeyIdFile", &id).unwrap(), "AKIDEXAMPLE");
        let e = read_key("secretAccessKeyFile", &secret)
            .unwrap_err()
            .to_string();
        assert!(e.contains("is empty"), "{e}");
    }
}
