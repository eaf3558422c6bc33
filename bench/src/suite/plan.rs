//! The suite's plan: the durations, repeats and connection counts of each mode, what the
//! options change in them, and how many steps a run takes.

use std::path::PathBuf;

use anyhow::bail;
use clap::ValueEnum;

use crate::results::{Plan, Section, PROXY_SERVERS};

use super::SuiteArgs;

/// The proxy section's closed-loop cases, in the order of [`PROXY_SERVERS`].
pub(super) const PROXY_CASES: [Section; 3] = [Section::XgateProxy, Section::NginxProxy, Section::Direct];

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
                sections: Section::ALL.to_vec(),
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
                sections: Section::ALL.to_vec(),
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
                sections: Section::ALL.to_vec(),
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
        plan.proxy_connections = match &args.proxy_connections {
            Some(counts) => {
                if counts.is_empty() || counts.iter().any(|&c| c == 0 || c > 20_000) {
                    bail!("--proxy-connections: each count must be between 1 and 20000");
                }
                counts.clone()
            }
            None => proxy_connections(&plan.mode, &plan.connections),
        };
        if let Some(only) = &args.only {
            plan.select(only)?;
        }
        Ok(plan)
    }

    /// Keeps the sections in `only` and drops what the others would have run: wrk, the profile
    /// (it is taken of xgate terminating), and the proxy section's counts when none of its cases
    /// runs. An open-loop section needs the closed-loop cases its rate comes from.
    fn select(&mut self, only: &[Section]) -> anyhow::Result<()> {
        self.sections = Section::ALL
            .into_iter()
            .filter(|section| only.contains(section))
            .collect();
        let needs: [(Section, &[Section]); 2] = [
            (Section::OpenLoop, &[Section::Xgate, Section::Nginx]),
            (
                Section::ProxyOpenLoop,
                &[Section::XgateProxy, Section::NginxProxy, Section::Direct],
            ),
        ];
        for (section, needed) in needs {
            if self.runs(section) && needed.iter().any(|&n| !self.runs(n)) {
                bail!(
                    "--only {}: needs {} too (its offered rate comes from their closed-loop runs)",
                    section_name(section),
                    needed
                        .iter()
                        .map(|&n| section_name(n))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
        }
        if !self.runs(Section::Wrk) {
            self.wrk_connections.clear();
        }
        if !self.runs(Section::Xgate) {
            self.profile = false;
        }
        if !PROXY_CASES.iter().any(|&case| self.runs(case)) {
            self.proxy_connections.clear();
        }
        Ok(())
    }

    pub(super) fn steps(&self) -> usize {
        let count = |section: Section| usize::from(self.runs(section));
        // Closed loop (and wrk where planned) for each terminating server, then both in open loop.
        let terminating = count(Section::Xgate) + count(Section::Nginx);
        let per_server = (self.connections.len() + self.wrk_connections.len()) * self.repeats;
        let open_loop = 2 * self.repeats * count(Section::OpenLoop);
        let profiles = if self.profile && self.runs(Section::Xgate) {
            self.connections
                .iter()
                .filter(|c| PROFILED_CONNECTIONS.contains(c))
                .count()
        } else {
            0
        };
        let two_lanes = self.lanes_connections().len() * self.repeats * count(Section::TwoLanes);
        // Closed loop at every proxy count for each proxy case that runs, then all three in open
        // loop at the reference count.
        let proxy_cases = PROXY_CASES.iter().filter(|&&case| self.runs(case)).count();
        let proxy_open_loop = if self.proxy_connections.is_empty() {
            0
        } else {
            PROXY_SERVERS.len() * count(Section::ProxyOpenLoop)
        };
        let proxy = (proxy_cases * self.proxy_connections.len() + proxy_open_loop) * self.repeats;
        let flood = 2 * self.repeats * count(Section::Flood);
        let tls_counts = if self.mode == "smoke" {
            1
        } else {
            TLS_CONNECTIONS.len()
        };
        let tls = 2 * (tls_counts + 1) * self.repeats * count(Section::Tls);
        terminating * per_server
            + open_loop
            + count(Section::Packets)
            + profiles
            + two_lanes
            + proxy
            + flood
            + tls
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

/// The name `--only` knows `section` by.
fn section_name(section: Section) -> String {
    section
        .to_possible_value()
        .map_or_else(|| format!("{section:?}"), |value| value.get_name().to_string())
}

/// Where the run's tables go besides its own files: `--results-md`, else `bench/RESULTS.md` for a
/// quick or full run of every section; a smoke run, or one with sections left out (`--only`),
/// rewrites no RESULTS.md unless asked to.
/// Keep-alive connection counts of the HTTPS section (a smoke run takes the first).
pub(super) const TLS_CONNECTIONS: [usize; 2] = [100, 1000];

pub(super) fn results_md_path(args: &SuiteArgs, plan: &Plan) -> Option<PathBuf> {
    match (&args.results_md, plan.mode.as_str()) {
        (Some(path), _) => Some(path.clone()),
        (None, "smoke") => None,
        (None, _) if !Section::is_every(&plan.sections) => None,
        (None, _) => Some(PathBuf::from("bench/RESULTS.md")),
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
            only: None,
            xgate: None,
            proxy_connections: None,
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

    /// `xgate-bench suite ARGS` as clap reads them.
    fn parse(args: &[&str]) -> Result<SuiteArgs, clap::Error> {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            suite: SuiteArgs,
        }
        Cli::try_parse_from(std::iter::once("suite").chain(args.iter().copied())).map(|cli| cli.suite)
    }

    #[test]
    fn proxy_connections_override_the_mode_and_are_checked() {
        let args = parse(&["--quick", "--proxy-connections", "100,10000"]).unwrap();
        assert_eq!(
            Plan::from_args(&args).unwrap().proxy_connections,
            vec![100, 10_000]
        );
        let args = parse(&["--quick"]).unwrap();
        assert_eq!(Plan::from_args(&args).unwrap().proxy_connections, vec![100]);
        for bad in ["0", "20001"] {
            let args = parse(&["--quick", "--proxy-connections", bad]).unwrap();
            let error = Plan::from_args(&args).unwrap_err().to_string();
            assert!(error.contains("--proxy-connections"), "{error}");
        }
    }

    #[test]
    fn only_and_xgate_parse() {
        let args = parse(&[
            "--quick",
            "--only",
            "xgate,xgate-proxy",
            "--xgate",
            "/tmp/old/xgate",
        ])
        .unwrap();
        assert_eq!(args.only, Some(vec![Section::Xgate, Section::XgateProxy]));
        assert_eq!(args.xgate, Some(PathBuf::from("/tmp/old/xgate")));
        let args = parse(&[
            "--only",
            "open-loop,proxy-open-loop,two-lanes,nginx-proxy,direct,wrk,flood,packets",
        ])
        .unwrap();
        assert_eq!(args.only.unwrap().len(), 8);
        let args = parse(&["--smoke"]).unwrap();
        assert_eq!((args.only, args.xgate), (None, None));
        assert_eq!(parse(&["--only", "xgate,tls"]).unwrap().only.unwrap().len(), 2);
        assert!(parse(&["--only", "xgate,quic"]).is_err());
    }

    #[test]
    fn only_xgate_and_its_proxy_keep_their_runs_and_drop_the_rest() {
        let args = parse(&[
            "--quick",
            "--connections",
            "100,10000",
            "--only",
            "xgate-proxy,xgate,xgate",
        ])
        .unwrap();
        let plan = Plan::from_args(&args).unwrap();
        assert_eq!(plan.sections, vec![Section::Xgate, Section::XgateProxy]);
        assert_eq!(plan.connections, vec![100, 10_000]);
        // No wrk, and the proxy section at 100 only (it stops at 1,000 connections).
        assert!(plan.wrk_connections.is_empty());
        assert_eq!(plan.proxy_connections, vec![100]);
        // xgate at two counts and xgate proxy at one, three repeats each; nothing else.
        assert_eq!(plan.steps(), (2 + 1) * 3);
        // --full's profile is of xgate terminating: kept with it, dropped without it.
        let full = Plan::from_args(&parse(&["--full", "--only", "xgate"]).unwrap()).unwrap();
        assert!(full.profile && full.proxy_connections.is_empty());
        assert_eq!(full.steps(), 4 * 3 + 2);
        let proxy_only = Plan::from_args(&parse(&["--full", "--only", "nginx-proxy"]).unwrap()).unwrap();
        assert!(!proxy_only.profile);
        assert_eq!(proxy_only.proxy_connections, vec![10, 100, 1000]);
        assert_eq!(proxy_only.steps(), 3 * 3);
        // Without --only every section runs, and the steps are as many as before it existed
        // (the HTTPS section: both servers at one count and for handshakes, in a smoke run).
        let every = Plan::from_args(&parse(&["--smoke"]).unwrap()).unwrap();
        assert!(Section::is_every(&every.sections));
        assert_eq!(
            every.steps(),
            2 * (2 + 1 + 1) * 3 + 1 + 3 + 3 * (1 + 1) * 3 + 2 * 3 + 2 * (1 + 1) * 3
        );
    }

    #[test]
    fn open_loop_sections_need_their_closed_loop_cases() {
        for only in [
            "xgate,open-loop",
            "nginx,open-loop",
            "xgate-proxy,nginx-proxy,proxy-open-loop",
        ] {
            let error = Plan::from_args(&parse(&["--only", only]).unwrap()).unwrap_err();
            assert!(error.to_string().contains("needs"), "{only}: {error}");
        }
        let error = Plan::from_args(&parse(&["--only", "open-loop"]).unwrap()).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("--only open-loop: needs xgate, nginx too"),
            "{error}"
        );
        for only in [
            "xgate,nginx,open-loop",
            "xgate-proxy,nginx-proxy,direct,proxy-open-loop",
        ] {
            assert!(
                Plan::from_args(&parse(&["--only", only]).unwrap()).is_ok(),
                "{only}"
            );
        }
    }

    #[test]
    fn results_md_is_rewritten_only_by_runs_of_every_section() {
        let path = |args: &[&str]| {
            let args = parse(args).unwrap();
            results_md_path(&args, &Plan::from_args(&args).unwrap())
        };
        assert_eq!(path(&["--quick"]), Some(PathBuf::from("bench/RESULTS.md")));
        assert_eq!(path(&["--full"]), Some(PathBuf::from("bench/RESULTS.md")));
        assert_eq!(path(&["--smoke"]), None);
        assert_eq!(path(&["--quick", "--only", "xgate,xgate-proxy"]), None);
        assert_eq!(
            path(&["--quick", "--only", "xgate", "--results-md", "/tmp/R.md"]),
            Some(PathBuf::from("/tmp/R.md"))
        );
    }
}
