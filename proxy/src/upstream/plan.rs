//! The order in which upstreams are asked for one request, and the verdict when none answered.
//! Latency outliers are moved behind faster healthy upstreams by [`super::outlier`].

use std::collections::BTreeMap;
use std::time::Instant;

use super::health::Health;
use super::outlier::Outlier;
use super::{AttemptError, Endpoint, PoolError, Target};

/// One module upstream and what is known of its health.
#[derive(Debug)]
pub(super) struct Member {
    pub(super) endpoint: Endpoint,
    pub(super) priority: u32,
    pub(super) weight: u32,
    pub(super) health: Health,
    pub(super) outlier: Outlier,
}

/// One step of a request's plan: an upstream (or a checksum database's direct URL) and the
/// path to ask it for.
#[derive(Debug, Clone)]
pub(super) struct Step {
    /// Index into `members`; None for a checksum database's direct URL.
    pub(super) member: Option<usize>,
    pub(super) endpoint: Endpoint,
    pub(super) path: String,
    pub(super) healthy: bool,
}

/// What went wrong in a pass over the plan, for the final verdict.
#[derive(Debug, Default)]
pub(super) struct Verdict {
    pub(super) not_found: Vec<String>,
    pub(super) failures: Vec<String>,
    pub(super) all_timeouts: bool,
}

impl Verdict {
    pub(super) fn new() -> Verdict {
        Verdict {
            all_timeouts: true,
            ..Verdict::default()
        }
    }

    pub(super) fn add(&mut self, endpoint: &Endpoint, e: AttemptError) {
        match e {
            AttemptError::NotFound { message, .. } => self.not_found.push(message),
            e => {
                self.all_timeouts &= matches!(e, AttemptError::Timeout(_));
                self.failures.push(format!("{}: {e}", endpoint.name));
            }
        }
    }

    pub(super) fn into_error(self, path: &str) -> PoolError {
        if self.failures.is_empty() {
            let message = self
                .not_found
                .into_iter()
                .find(|m| !m.is_empty())
                .unwrap_or_else(|| format!("not found: {path}"));
            PoolError::NotFound { message }
        } else {
            PoolError::Unavailable {
                timeout: self.all_timeouts,
                message: format!("no upstream could answer: {}", self.failures.join("; ")),
            }
        }
    }
}

impl super::UpstreamPool {
    /// The order in which to ask upstreams for one request.
    pub(super) fn plan(&self, target: Target<'_>, path: &str) -> Vec<Step> {
        let mut groups: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
        for (i, m) in self.members.iter().enumerate() {
            groups.entry(m.priority).or_default().push(i);
        }
        let mut healthy = Vec::new();
        let mut unhealthy = Vec::new();
        for (_, group) in groups {
            let (mut up, down): (Vec<usize>, Vec<usize>) = group
                .into_iter()
                .partition(|&i| self.members[i].health.is_healthy());
            // Weighted random order among equals: repeatedly draw by weight.
            while !up.is_empty() {
                let total: u64 = up.iter().map(|&i| u64::from(self.members[i].weight)).sum();
                let mut draw = fastrand::u64(0..total);
                let pos = up
                    .iter()
                    .position(|&i| {
                        let w = u64::from(self.members[i].weight);
                        if draw < w {
                            true
                        } else {
                            draw -= w;
                            false
                        }
                    })
                    .expect("draw is below the total weight");
                healthy.push(up.remove(pos));
            }
            unhealthy.extend(down);
        }
        let healthy = self.demote_in_plan(healthy, Instant::now());
        let rel = |base: &str| match target {
            Target::Modules => base.to_string(),
            Target::Sumdb(name) => format!("sumdb/{name}/{base}"),
        };
        let mut steps: Vec<Step> = healthy
            .into_iter()
            .map(|i| (i, true))
            .chain(unhealthy.into_iter().map(|i| (i, false)))
            .map(|(i, ok)| Step {
                member: Some(i),
                endpoint: self.members[i].endpoint.clone(),
                path: rel(path),
                healthy: ok,
            })
            .collect();
        if let Target::Sumdb(name) = target
            && let Some((_, direct)) = self.sumdbs.iter().find(|(n, _)| n == name)
        {
            steps.push(Step {
                member: None,
                endpoint: direct.clone(),
                path: path.to_string(),
                healthy: true,
            });
        }
        steps
    }
}
