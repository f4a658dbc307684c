//! Trace export settings read from the standard `OTEL_*` environment variables.
//!
//! The OpenTelemetry SDK reads most of them itself (endpoint, headers, timeout, sampler and its
//! ratio, service name and resource attributes). What lives here is what decides whether to
//! export at all, the export queue's bounds, and checks that turn a typo into an error at start
//! instead of a silently different setup.

use std::time::Duration;

use crate::Error;

/// How spans leave the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Grpc,
    HttpProtobuf,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Grpc => "grpc",
            Protocol::HttpProtobuf => "http/protobuf",
        }
    }
}

/// Everything about trace export that is decided before the SDK is built.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportSettings {
    /// The endpoint as configured (for the start-up log line; the SDK reads it again).
    pub endpoint: String,
    pub protocol: Protocol,
    /// Spans waiting for export; more are dropped (and counted), never waited for.
    pub max_queue_size: usize,
    pub max_export_batch_size: usize,
    /// How long a span may wait before its batch is sent.
    pub schedule_delay: Duration,
    /// Upper bound for one export call.
    pub export_timeout: Duration,
}

const SAMPLERS: &[&str] = &[
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
];

impl ExportSettings {
    /// Reads the settings through `lookup` (normally `std::env::var`). `Ok(None)`: export is
    /// off, because no endpoint is set, `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none`.
    pub fn from_env(lookup: impl Fn(&str) -> Option<String>) -> Result<Option<Self>, Error> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        if get("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
            return Ok(None);
        }
        match get("OTEL_TRACES_EXPORTER").as_deref().map(str::trim) {
            None | Some("otlp") => {}
            Some("none") => return Ok(None),
            Some(other) => {
                return Err(Error::Env {
                    name: "OTEL_TRACES_EXPORTER",
                    value: other.to_string(),
                    expected: "otlp or none",
                });
            }
        }
        let Some(endpoint) = get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            .or_else(|| get("OTEL_EXPORTER_OTLP_ENDPOINT"))
        else {
            return Ok(None);
        };
        if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
            return Err(Error::Env {
                name: "OTEL_EXPORTER_OTLP_ENDPOINT",
                value: endpoint,
                expected: "an http:// or https:// URL, e.g. http://otel-collector:4317",
            });
        }
        let protocol_var = if get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL").is_some() {
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
        } else {
            "OTEL_EXPORTER_OTLP_PROTOCOL"
        };
        // The specification's default is http/protobuf.
        let protocol = match get(protocol_var).as_deref().map(str::trim) {
            None | Some("http/protobuf") => Protocol::HttpProtobuf,
            Some("grpc") => Protocol::Grpc,
            Some(other) => {
                return Err(Error::Env {
                    name: protocol_var,
                    value: other.to_string(),
                    expected: "grpc or http/protobuf",
                });
            }
        };
        if let Some(sampler) = get("OTEL_TRACES_SAMPLER") {
            let sampler = sampler.trim();
            if !SAMPLERS.contains(&sampler) {
                return Err(Error::Env {
                    name: "OTEL_TRACES_SAMPLER",
                    value: sampler.to_string(),
                    expected: "one of always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off, parentbased_traceidratio",
                });
            }
            if sampler.ends_with("traceidratio")
                && let Some(arg) = get("OTEL_TRACES_SAMPLER_ARG")
                && !arg
                    .trim()
                    .parse::<f64>()
                    .is_ok_and(|r| (0.0..=1.0).contains(&r))
            {
                return Err(Error::Env {
                    name: "OTEL_TRACES_SAMPLER_ARG",
                    value: arg,
                    expected: "a ratio between 0 and 1, e.g. 0.1",
                });
            }
        }
        let number = |name: &'static str, default: u64| -> Result<u64, Error> {
            match get(name) {
                None => Ok(default),
                Some(v) => v
                    .trim()
                    .parse::<u64>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or(Error::Env {
                        name,
                        value: v,
                        expected: "a positive whole number",
                    }),
            }
        };
        let max_queue_size = number("OTEL_BSP_MAX_QUEUE_SIZE", 2048)? as usize;
        let max_export_batch_size =
            (number("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512)? as usize).min(max_queue_size);
        Ok(Some(ExportSettings {
            endpoint,
            protocol,
            max_queue_size,
            max_export_batch_size,
            schedule_delay: Duration::from_millis(number("OTEL_BSP_SCHEDULE_DELAY", 5000)?),
            export_timeout: Duration::from_millis(number("OTEL_BSP_EXPORT_TIMEOUT", 30000)?),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(vars: &[(&str, &str)]) -> Result<Option<ExportSettings>, Error> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        ExportSettings::from_env(|name| {
            vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
        })
    }

    #[test]
    fn off_without_an_endpoint_or_when_disabled() {
        assert_eq!(read(&[]).unwrap(), None);
        assert_eq!(read(&[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")]).unwrap(), None);
        let on = [("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318")];
        assert!(read(&on).unwrap().is_some());
        assert_eq!(read(&[on[0], ("OTEL_SDK_DISABLED", "TRUE")]).unwrap(), None);
        assert_eq!(
            read(&[on[0], ("OTEL_TRACES_EXPORTER", "none")]).unwrap(),
            None
        );
    }

    #[test]
    fn protocol_defaults_to_http_protobuf_and_the_traces_variable_wins() {
        let s = read(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318")])
            .unwrap()
            .unwrap();
        assert_eq!(s.protocol, Protocol::HttpProtobuf);
        assert_eq!(s.max_queue_size, 2048);
        assert_eq!(s.schedule_delay, Duration::from_secs(5));
        let s = read(&[
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://c:4317"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc"),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "10"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(s.protocol, Protocol::Grpc);
        assert_eq!(s.endpoint, "http://c:4317");
        assert_eq!(s.schedule_delay, Duration::from_millis(100));
        assert_eq!(
            s.max_export_batch_size, 10,
            "a batch never exceeds the queue"
        );
    }

    #[test]
    fn typos_are_errors_that_name_the_variable_and_the_fix() {
        let endpoint = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317");
        for (vars, needle) in [
            (
                vec![endpoint, ("OTEL_EXPORTER_OTLP_PROTOCOL", "gprc")],
                "grpc or http/protobuf",
            ),
            (
                vec![endpoint, ("OTEL_TRACES_SAMPLER", "ratio")],
                "parentbased_traceidratio",
            ),
            (
                vec![
                    endpoint,
                    ("OTEL_TRACES_SAMPLER", "traceidratio"),
                    ("OTEL_TRACES_SAMPLER_ARG", "10%"),
                ],
                "between 0 and 1",
            ),
            (vec![endpoint, ("OTEL_BSP_MAX_QUEUE_SIZE", "0")], "positive"),
            (vec![("OTEL_EXPORTER_OTLP_ENDPOINT", "c:4317")], "http://"),
            (
                vec![endpoint, ("OTEL_TRACES_EXPORTER", "jaeger")],
                "otlp or none",
            ),
        ] {
            let err = read(&vars).unwrap_err().to_string();
            assert!(err.contains(needle), "{err:?} should mention {needle:?}");
        }
    }
}
