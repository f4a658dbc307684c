//! What the real go command makes of an injected Pod: the patch from `injection::patch`,
//! applied as the API server applies it, gives each container an environment in which
//! `go env` names the fleet, a container's own settings still mean what they meant, and the
//! fallback after the comma is asked only when the fleet answers "no such module" (an outage
//! of the fleet is never silently bypassed). Needs `go` on PATH.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Output;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::Pod;
use modfleet_operator::crd::GoModuleProxy;
use modfleet_operator::injection;
use serde_json::{Value, json};

fn fleet(fallback: &str) -> GoModuleProxy {
    serde_json::from_value(json!({
        "apiVersion": "modfleet.dev/v1alpha1",
        "kind": "GoModuleProxy",
        "metadata": {"name": "gomod", "namespace": "build", "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {
            "upstreams": [{"url": "https://goproxy.example.com"}],
            "privateModules": [{"pattern": "git.corp.example.com/*"}],
            "noSumPatterns": ["corp.example.com/legacy"],
            "injection": {"namespaceSelector": {}, "fallback": {"url": fallback}}
        }
    }))
    .unwrap()
}

/// The go command with nothing from this machine's Go environment but `PATH`: a fresh
/// home and caches under `dir`, no go env file, no toolchain switch.
fn go(dir: &Path, env: &BTreeMap<String, String>, args: &[&str]) -> Output {
    let mut cmd = modfleet_testkit::go::isolated(dir);
    cmd.envs(env).args(args);
    cmd.output().unwrap_or_else(|e| {
        panic!("cannot run the go command (install Go and put it on PATH): {e}")
    })
}

/// `go env -json` of the variables that decide where modules come from.
fn go_env(env: &BTreeMap<String, String>) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let out = go(
        dir.path(),
        env,
        &[
            "env",
            "-json",
            "GOPROXY",
            "GONOSUMDB",
            "GONOPROXY",
            "GOPRIVATE",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The environment Kubernetes gives container `name` of the patched `raw` Pod (literal
/// values only; `$$` read as `$`).
fn container_env(raw: &Value, name: &str) -> BTreeMap<String, String> {
    let pod: Pod = serde_json::from_value(raw.clone()).unwrap();
    let p = injection::patch(
        &pod,
        &injection::settings(&fleet("https://mirror.corp.example.com")),
    );
    let mut doc = raw.clone();
    json_patch::patch(&mut doc, &p).unwrap();
    let pod: Pod = serde_json::from_value(doc).unwrap();
    let spec = pod.spec.unwrap();
    let c = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .find(|c| c.name == name)
        .unwrap();
    c.env
        .iter()
        .flatten()
        .map(|e| (e.name.clone(), e.value.clone().unwrap().replace("$$", "$")))
        .collect()
}

#[test]
fn go_env_in_an_injected_pod_names_the_fleet_and_keeps_the_containers_own() {
    let raw = json!({
        "metadata": {"name": "ci"},
        "spec": {
            "initContainers": [{"name": "fetch"}],
            "containers": [
                {"name": "build"},
                {"name": "own-private", "env": [{"name": "GOPRIVATE", "value": "secret.example.com"}]},
                {"name": "own-proxy", "env": [{"name": "GOPROXY", "value": "off"}]}
            ]
        }
    });
    let fleet_then_mirror = "http://gomod.build.svc:80,https://mirror.corp.example.com";
    let ours = "git.corp.example.com/*,corp.example.com/legacy";
    for name in ["fetch", "build"] {
        let env = go_env(&container_env(&raw, name));
        assert_eq!(env["GOPROXY"], fleet_then_mirror, "{name}");
        assert_eq!(env["GONOSUMDB"], ours, "{name}");
        // Private modules are still fetched through the fleet, never from Git by the build.
        assert_eq!(env["GONOPROXY"], "", "{name}");
        assert_eq!(env["GOPRIVATE"], "", "{name}");
    }
    // The container's GOPRIVATE keeps covering both the checksum database and the proxy.
    let env = go_env(&container_env(&raw, "own-private"));
    assert_eq!(env["GOPROXY"], fleet_then_mirror);
    assert_eq!(env["GONOSUMDB"], "secret.example.com");
    assert_eq!(env["GONOPROXY"], "secret.example.com");
    // Which a GONOSUMDB set beside it would have silently replaced:
    let mut naive = container_env(&raw, "own-private");
    naive.insert("GONOSUMDB".into(), ours.into());
    assert_eq!(go_env(&naive)["GONOSUMDB"], ours);
    let env = go_env(&container_env(&raw, "own-proxy"));
    assert_eq!(env["GOPROXY"], "off");
    assert_eq!(env["GONOSUMDB"], ours);
}

/// A loopback HTTP server answering every request with `status`, recording request paths.
fn server(status: u16) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let path = line
                .split_whitespace()
                .nth(1)
                .unwrap_or_default()
                .to_owned();
            log.lock().unwrap().push(path);
            // The rest of the request head.
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).unwrap_or(0) == 0 || header == "\r\n" {
                    break;
                }
            }
            let _ = write!(
                conn,
                "HTTP/1.1 {status} X\r\nContent-Length: 9\r\nConnection: close\r\n\r\nnot here\n"
            );
        }
    });
    (url, seen)
}

/// `go mod download` of one module with `GOPROXY=FLEET,FALLBACK`: the paths the fallback
/// was asked for.
fn download_through(fleet: &str) -> (Output, Vec<String>) {
    let (fallback, asked) = server(404);
    let dir = tempfile::tempdir().unwrap();
    let env = BTreeMap::from([
        ("GOPROXY".to_owned(), format!("{fleet},{fallback}")),
        ("GOSUMDB".to_owned(), "off".to_owned()),
    ]);
    let out = go(
        dir.path(),
        &env,
        &["mod", "download", "-json", "corp.example.com/tool@v1.0.0"],
    );
    let asked = asked.lock().unwrap().clone();
    (out, asked)
}

/// The comma: the fallback is asked only after the fleet says 404; a fleet that is down or
/// failing fails the download without it.
#[test]
fn the_fallback_is_asked_only_when_the_fleet_has_no_such_module() {
    let (fleet, _) = server(404);
    let (out, asked) = download_through(&fleet);
    assert!(!out.status.success());
    assert!(
        asked
            .iter()
            .any(|p| p.starts_with("/corp.example.com/tool/@v/")),
        "{asked:?}"
    );

    for (what, fleet) in [
        ("failing", server(502).0),
        ("down", {
            // A port nothing listens on any more.
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            format!("http://{}", l.local_addr().unwrap())
        }),
    ] {
        let (out, asked) = download_through(&fleet);
        assert!(!out.status.success(), "{what}");
        assert!(asked.is_empty(), "{what}: the fallback was asked {asked:?}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains(&fleet["http://".len()..]),
            "{what}: {stdout}"
        );
    }
}
