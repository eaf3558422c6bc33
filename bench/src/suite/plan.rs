//! The suite's plan: the durations, repeats and connection counts of each mode, what the
//! options change in them, and how many steps a run takes.

use anyhow::bail;

use crate::results::{Plan, PROXY_SERVERS};

use super::SuiteArgs;

/// The largest connection count the proxy section runs at.
const PROXY_MAX_CONNECTIONS: usize = 1000;

/// Connection counts at which `--profile` records xgate: the reference load and the largest.
pub(super) const PROFILED_CONNECTIONS: [usize; 2] = [100, 10_000];

impl Plan {
    pub(super) fn from_args(args: &SuiteArgs) -> anyhow::Result<Plan> {
        let mut plan = if args.full {
            Plan {
                mode: "full".into(),
                connections: vec![10, 100, 1000, 10_000],
                repeats: 3,
                warmup_seconds: 2.0,
                duration_seconds: 10.0,
                wrk_connections: vec![10, 100, 1000, 10_000],
                packet_seconds: 3.0,
                profile: true,
                proxy_connections: Vec::new(),
            }
        } else if args.smoke {
            Plan {
                mode: "smoke".into(),
                connections: vec![10, 100],
                repeats: 3,
                warmup_seconds: 0.1,
                duration_seconds: 0.3,
                wrk_connections: vec![10],
                packet_seconds: 0.2,
                profile: false,
                proxy_connections: Vec::new(),
            }
        } else {
            Plan {
                mode: "quick".into(),
                connections: vec![10, 100, 1000, 10_000],
                repeats: 3,
                warmup_seconds: 0.5,
                duration_seconds: 2.0,
                wrk_connections: vec![100],
                packet_seconds: 1.0,
                profile: false,
                proxy_connections: Vec::new(),
            }
        };
        if let Some(repeats) = args.repeats {
            if repeats == 0 {
                bail!("--repeats must be at least 1");
            }
            plan.repeats = repeats;
        }
        if let Some(connections) = &args.connections {
            if connections.is_empty() || connections.iter().any(|&c| c == 0 || c > 20_000) {
                bail!("--connections: each count must be between 1 and 20000");
            }
            plan.connections = connections.clone();
            plan.wrk_connections.retain(|c| connections.contains(c));
        }
        plan.profile |= args.profile;
        plan.proxy_connections = proxy_connections(&plan.mode, &plan.connections);
        Ok(plan)
    }

    pub(super) fn steps(&self) -> usize {
        let per_server = (self.connections.len() + self.wrk_connections.len() + 1) * self.repeats;
        let profiles = if self.profile {
            self.connections
                .iter()
                .filter(|c| PROFILED_CONNECTIONS.contains(c))
                .count()
        } else {
            0
        };
        let two_lanes = self.lanes_connections().len() * self.repeats;
        // Closed loop at every proxy count, then open loop at the reference count.
        let proxy_open_loop = usize::from(!self.proxy_connections.is_empty());
        let proxy = PROXY_SERVERS.len() * (self.proxy_connections.len() + proxy_open_loop) * self.repeats;
        let flood = 2 * self.repeats;
        2 * per_server + 1 + profiles + two_lanes + proxy + flood
    }

    /// Connection counts at which xgate also runs with two lanes (the reference load and the
    /// largest count of the plan).
    pub(super) fn lanes_connections(&self) -> Vec<usize> {
        let mut counts: Vec<usize> = self
            .connections
            .iter()
            .copied()
            .filter(|c| *c == 100 || Some(c) == self.connections.iter().max())
            .collect();
        counts.dedup();
        counts
    }
}

/// Connection counts of the proxy section: in the full mode every count of the plan up to
/// [`PROXY_MAX_CONNECTIONS`]; otherwise one of them, 100 if the plan has it.
pub(super) fn proxy_connections(mode: &str, connections: &[usize]) -> Vec<usize> {
    let candidates: Vec<usize> = connections
        .iter()
        .copied()
        .filter(|&c| c <= PROXY_MAX_CONNECTIONS)
        .collect();
    if mode == "full" {
        candidates
    } else if candidates.contains(&100) {
        vec![100]
    } else {
        candidates.into_iter().take(1).collect()
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    #[test]
    fn proxy_section_runs_at_one_count_or_at_every_count_up_to_1000() {
        assert_eq!(proxy_connections("smoke", &[10, 100]), vec![100]);
        assert_eq!(proxy_connections("quick", &[10, 100, 1000, 10_000]), vec![100]);
        assert_eq!(proxy_connections("quick", &[10, 10_000]), vec![10]);
        assert_eq!(proxy_connections("quick", &[10_000]), Vec::<usize>::new());
        assert_eq!(
            proxy_connections("full", &[10, 100, 1000, 10_000]),
            vec![10, 100, 1000]
        );
    }

    #[test]
    fn steps_count_the_proxy_runs() {
        let args = SuiteArgs {
            quick: false,
            full: false,
            smoke: true,
            repeats: None,
            connections: None,
            out: PathBuf::from("out"),
            results_md: None,
            profile: false,
        };
        let plan = Plan::from_args(&args).unwrap();
        assert_eq!(plan.proxy_connections, vec![100]);
        let mut without = plan.clone();
        without.proxy_connections.clear();
        // Three servers, closed loop and open loop at 100 connections.
        assert_eq!(plan.steps() - without.steps(), 2 * 3 * plan.repeats);
        let mut full = plan.clone();
        full.proxy_connections = vec![10, 100, 1000];
        // Closed loop at each of three counts, open loop at one.
        assert_eq!(full.steps() - without.steps(), 4 * 3 * plan.repeats);
    }
}
