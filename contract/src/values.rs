//! The value syntaxes of the config file, shared with the flags where they take the same
//! values: durations (`30s`), byte sizes (`18Gi`), switches (`on`/`off`) and the hedge delay
//! (`auto`, `off` or a duration).

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Parses a duration in humantime's syntax (`60s`, `5m`, `1h30m`, `500ms`), with a message
/// that shows how to write one.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s)
        .map_err(|e| format!("invalid duration {s:?} ({e}): use for example 60s, 5m or 1h"))
}

/// A duration as the config file writes it (humantime's syntax: `30s`, `1m30s`, `500ms`).
///
/// It keeps the text it was written as: the operator renders a spec's `timeout: 1m30s` as
/// written (another spelling would change the ConfigMap's hash and roll the fleet), and a
/// default reads in help and docs as its constant says. Equal when the durations are.
#[derive(Clone, Debug)]
pub struct HumanDuration {
    value: Duration,
    text: Cow<'static, str>,
}

impl HumanDuration {
    /// A constant, written as whole numbers with the units `ms`, `s`, `m` and `h` (`60s`,
    /// `1m30s`); any other text fails the build.
    pub const fn from_static(text: &'static str) -> HumanDuration {
        let b = text.as_bytes();
        let (mut i, mut total_ms, mut n, mut digits) = (0, 0u64, 0u64, false);
        assert!(!b.is_empty(), "a duration constant is empty");
        while i < b.len() {
            let c = b[i];
            if c.is_ascii_digit() {
                n = n * 10 + (c - b'0') as u64;
                digits = true;
                i += 1;
                continue;
            }
            assert!(
                digits,
                "a duration constant needs a number before each unit"
            );
            let (unit_ms, len) = match c {
                b'm' if i + 1 < b.len() && b[i + 1] == b's' => (1, 2),
                b's' => (1_000, 1),
                b'm' => (60_000, 1),
                b'h' => (3_600_000, 1),
                _ => panic!("a duration constant takes the units ms, s, m and h"),
            };
            total_ms += n * unit_ms;
            (n, digits) = (0, false);
            i += len;
        }
        assert!(!digits, "a duration constant ends with a unit");
        HumanDuration {
            value: Duration::from_millis(total_ms),
            text: Cow::Borrowed(text),
        }
    }

    pub const fn get(&self) -> Duration {
        self.value
    }

    /// The text it was written as.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl PartialEq for HumanDuration {
    fn eq(&self, other: &Self) -> bool {
        self.value == other.value
    }
}

impl Eq for HumanDuration {}

impl From<Duration> for HumanDuration {
    fn from(value: Duration) -> HumanDuration {
        HumanDuration {
            value,
            text: Cow::Owned(humantime::format_duration(value).to_string()),
        }
    }
}

impl FromStr for HumanDuration {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(HumanDuration {
            value: parse_duration(s)?,
            text: Cow::Owned(s.to_owned()),
        })
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = HumanDuration;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<HumanDuration, E> {
                v.parse()
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Str(v), &self))
            }
        }
        d.deserialize_str(Visitor)
    }
}

/// A switch written `on` or `off` (YAML also takes `true` and `false`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnOff {
    On,
    Off,
}

impl OnOff {
    pub fn is_on(self) -> bool {
        self == OnOff::On
    }

    pub fn as_str(self) -> &'static str {
        match self {
            OnOff::On => "on",
            OnOff::Off => "off",
        }
    }
}

impl fmt::Display for OnOff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<bool> for OnOff {
    fn from(on: bool) -> OnOff {
        if on { OnOff::On } else { OnOff::Off }
    }
}

impl FromStr for OnOff {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "on" | "true" => Ok(OnOff::On),
            "off" | "false" => Ok(OnOff::Off),
            _ => Err(format!("invalid value {s:?}: use on or off")),
        }
    }
}

/// Written as a YAML boolean, which both sides of a YAML file read alike.
impl Serialize for OnOff {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bool(self.is_on())
    }
}

impl<'de> Deserialize<'de> for OnOff {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Bool(bool),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Bool(true) => Ok(OnOff::On),
            Raw::Bool(false) => Ok(OnOff::Off),
            Raw::Text(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// When to hedge a request to the next upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HedgeDelay {
    /// The upstream's observed p95 time to answer, clamped to [20ms, 1s]; 1s until known.
    Auto,
    Off,
    Fixed(Duration),
}

impl FromStr for HedgeDelay {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "auto" => Ok(HedgeDelay::Auto),
            "off" | "0" | "0s" => Ok(HedgeDelay::Off),
            other => parse_duration(other).map(HedgeDelay::Fixed).map_err(|_| {
                format!("invalid hedge delay {s:?}: use auto, off or a duration such as 300ms")
            }),
        }
    }
}

impl fmt::Display for HedgeDelay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HedgeDelay::Auto => f.write_str("auto"),
            HedgeDelay::Off => f.write_str("off"),
            HedgeDelay::Fixed(d) => write!(f, "{}", humantime::format_duration(*d)),
        }
    }
}

impl Serialize for HedgeDelay {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HedgeDelay {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// A size in bytes, written as a plain number or with a decimal (k, M, G, T) or binary
/// (Ki, Mi, Gi, Ti) suffix, as in Kubernetes quantities. A trailing `B` is accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl FromStr for ByteSize {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let t = t.strip_suffix('B').unwrap_or(t);
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (digits, suffix) = t.split_at(split);
        let multiplier: u64 = match suffix {
            "" => 1,
            "k" | "K" => 1_000,
            "M" => 1_000_000,
            "G" => 1_000_000_000,
            "T" => 1_000_000_000_000,
            "Ki" => 1 << 10,
            "Mi" => 1 << 20,
            "Gi" => 1 << 30,
            "Ti" => 1 << 40,
            _ => {
                return Err(format!(
                    "invalid size {s:?}: use bytes or a suffix k, M, G, T, Ki, Mi, Gi, Ti (for example 20Gi)"
                ));
            }
        };
        let n: u64 = digits
            .parse()
            .map_err(|_| format!("invalid size {s:?}: expected a whole number such as 20Gi"))?;
        n.checked_mul(multiplier)
            .map(ByteSize)
            .ok_or_else(|| format!("invalid size {s:?}: too large"))
    }
}

/// Written as a number of bytes.
impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.0)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Number(n) => Ok(ByteSize(n)),
            Raw::Text(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_sizes() {
        assert_eq!("1024".parse::<ByteSize>().unwrap().0, 1024);
        assert_eq!("20Gi".parse::<ByteSize>().unwrap().0, 20 << 30);
        assert_eq!("10G".parse::<ByteSize>().unwrap().0, 10_000_000_000);
        assert_eq!("512MiB".parse::<ByteSize>().unwrap().0, 512 << 20);
        assert!("12 parsecs".parse::<ByteSize>().is_err());
        assert!("-1".parse::<ByteSize>().is_err());
    }

    #[test]
    fn duration_constants_mean_what_humantime_reads() {
        for text in [
            "60s",
            "5m",
            "200ms",
            "1m30s",
            "2h",
            "10s",
            "0s",
            "1h2m3s4ms",
        ] {
            let c = HumanDuration::from_static(text);
            assert_eq!(c.get(), humantime::parse_duration(text).unwrap(), "{text}");
            assert_eq!(c.to_string(), text);
        }
    }

    #[test]
    fn durations_keep_their_text_and_compare_by_value() {
        let d: HumanDuration = "1m30s".parse().unwrap();
        assert_eq!(d.get(), Duration::from_secs(90));
        assert_eq!(d.as_str(), "1m30s");
        assert_eq!(d, HumanDuration::from_static("90s"));
        assert_eq!(
            HumanDuration::from(Duration::from_secs(90)).as_str(),
            "1m 30s"
        );
        let err = "5 parsecs".parse::<HumanDuration>().unwrap_err();
        assert!(err.contains("use for example 60s"), "{err}");
    }

    #[test]
    fn switches_and_hedge_delays() {
        assert_eq!("true".parse::<OnOff>(), Ok(OnOff::On));
        assert_eq!("off".parse::<OnOff>(), Ok(OnOff::Off));
        assert!("maybe".parse::<OnOff>().is_err());
        assert_eq!("auto".parse::<HedgeDelay>(), Ok(HedgeDelay::Auto));
        assert_eq!("0s".parse::<HedgeDelay>(), Ok(HedgeDelay::Off));
        assert_eq!(
            "250ms".parse::<HedgeDelay>(),
            Ok(HedgeDelay::Fixed(Duration::from_millis(250)))
        );
        for h in [
            HedgeDelay::Auto,
            HedgeDelay::Off,
            HedgeDelay::Fixed(Duration::from_millis(250)),
        ] {
            assert_eq!(h.to_string().parse::<HedgeDelay>(), Ok(h));
        }
    }
}
