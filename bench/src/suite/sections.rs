//! The HTTP sections of the suite, each a series of repeated runs against fresh servers: both
//! servers terminating at every connection count (with wrk and a profile where planned), open
//! loop at one offered rate, xgate with two lanes, and proxy mode.

use anyhow::bail;

use crate::{
    process::check_interrupted,
    report,
    results::{
        proxy_reference, HttpCase, ProfileSection, RunFigures, Section, TlsCase, OPEN_LOOP_CLIENT,
        TWO_LANES_SERVER,
    },
};

use super::{
    plan::{PROFILED_CONNECTIONS, PROXY_CASES, TLS_CONNECTIONS},
    servers::{stop, NginxRole, Server, UPSTREAM_MARGIN},
    Suite,
};

/// Runs `client_run` (a client as a child process) and returns its result with the client's
/// CPU time over the run's wall time: near 1, the client was the limit.
fn client_busy<T>(client_run: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<(T, f64)> {
    let before = crate::cpu::children_cpu_time();
    let started = std::time::Instant::now();
    let result = client_run()?;
    let cpu = crate::cpu::children_cpu_time().saturating_sub(before);
    Ok((
        result,
        cpu.as_secs_f64() / started.elapsed().as_secs_f64().max(1e-9),
    ))
}

impl Suite {
    /// `plan.repeats` runs of `measure`, each against a freshly started server, with a progress
    /// step per run.
    pub(super) fn repeated(
        &mut self,
        server: Server,
        connections: usize,
        label: &str,
        measure: impl Fn(&Self) -> anyhow::Result<RunFigures>,
    ) -> anyhow::Result<Vec<RunFigures>> {
        let mut runs: Vec<RunFigures> = Vec::new();
        for repeat in 0..self.plan.repeats {
            let run =
                self.with_fresh_server(server, connections, |suite, process| match (server, process) {
                    // As a proxy, xgate also says how often it opened an upstream connection.
                    (Server::XgateProxy, Some(process)) => {
                        suite.measure_upstream_churn(process, connections, &measure)
                    }
                    _ => measure(suite),
                })?;
            let figure = match run.offered_rate {
                Some(_) => format!("p99 {:.0} us", run.p99_us),
                None => format!("{:.0} req/s", run.requests_per_second),
            };
            runs.push(run);
            self.progress.step(&format!(
                "{} c={connections} {label} run {}/{}: {figure}",
                server.name(),
                repeat + 1,
                self.plan.repeats,
            ));
        }
        Ok(runs)
    }

    /// HTTPS: xgate and nginx terminating TLS with the same certificate (ECDSA P-256), each at
    /// [`TLS_CONNECTIONS`] keep-alive connections (wrk) and for full handshakes (ab, one
    /// request per connection, no session reuse), with ab's CPU share recorded (the client's
    /// handshake costs about what the server's does).
    pub(super) fn run_tls(&mut self) -> anyhow::Result<Vec<TlsCase>> {
        super::servers::make_certificate(&self.work)?;
        let counts: &[usize] = if self.plan.mode == "smoke" {
            &[100]
        } else {
            &TLS_CONNECTIONS
        };
        let mut cases = Vec::new();
        for (server, name) in [(Server::XgateTls, "xgate"), (Server::NginxTls, "nginx")] {
            let mut keep_alive = Vec::new();
            let mut keep_alive_client_busy = Vec::new();
            for &connections in counts {
                let busy = std::cell::RefCell::new(Vec::new());
                let runs = self.repeated(server, connections, "wrk https", |suite| {
                    let (run, client_busy) = client_busy(|| suite.wrk_run(server, connections))?;
                    busy.borrow_mut().push(client_busy);
                    Ok(run)
                })?;
                keep_alive_client_busy.push(busy.into_inner());
                keep_alive.push(HttpCase {
                    server: name.into(),
                    client: "wrk".into(),
                    connections,
                    runs,
                });
            }
            let mut handshakes = Vec::new();
            let mut busy = Vec::new();
            for repeat in 0..self.plan.repeats {
                let (run, client_busy) =
                    self.with_fresh_server(server, 100, |suite, _| client_busy(|| suite.ab_run(server)))?;
                self.progress.step(&format!(
                    "{} handshakes run {}/{}: {:.0} conn/s (ab busy {:.0}%)",
                    server.name(),
                    repeat + 1,
                    self.plan.repeats,
                    run.requests_per_second,
                    client_busy * 100.0
                ));
                handshakes.push(run);
                busy.push(client_busy);
            }
            cases.push(TlsCase {
                server: name.into(),
                keep_alive,
                keep_alive_client_busy,
                handshakes,
                handshake_client_busy: busy,
            });
        }
        Ok(cases)
    }

    pub(super) fn run_server(
        &mut self,
        server: Server,
        cases: &mut Vec<HttpCase>,
        profile: &mut Vec<ProfileSection>,
    ) -> anyhow::Result<()> {
        for connections in self.plan.connections.clone() {
            let runs = self.repeated(server, connections, "xgate-bench", |suite| {
                suite.generator_run(server, connections)
            })?;
            cases.push(HttpCase {
                server: server.name().into(),
                client: "xgate-bench".into(),
                connections,
                runs,
            });
            if self.plan.wrk_connections.contains(&connections) {
                let runs = self.repeated(server, connections, "wrk", |suite| {
                    suite.wrk_run(server, connections)
                })?;
                cases.push(HttpCase {
                    server: server.name().into(),
                    client: "wrk".into(),
                    connections,
                    runs,
                });
            }
            if server == Server::Xgate && self.plan.profile && PROFILED_CONNECTIONS.contains(&connections) {
                let top = self
                    .with_fresh_server(server, connections, |suite, process| match process {
                        Some(process) => suite.profile_xgate(process, connections),
                        None => bail!("no xgate process to profile"),
                    })
                    .unwrap_or_else(|e| vec![format!("profile failed: {e:#}")]);
                profile.push(ProfileSection { connections, top });
                self.progress
                    .step(&format!("xgate profile at {connections} connections recorded"));
            }
        }
        Ok(())
    }

    /// Latency at the same offered load for both servers: open loop (coordinated-omission
    /// corrected) at 100 connections (or the first count), at half the lower of the two servers'
    /// closed-loop medians, so that neither is saturated.
    pub(super) fn run_open_loop(&mut self, cases: &mut Vec<HttpCase>) -> anyhow::Result<()> {
        let connections = self.reference_connections();
        let median_rps = |server: &str| {
            cases
                .iter()
                .find(|c| c.server == server && c.client == "xgate-bench" && c.connections == connections)
                .and_then(|c| {
                    report::Spread::of(&c.runs.iter().map(|r| r.requests_per_second).collect::<Vec<_>>())
                })
                .map_or(0.0, |s| s.median)
        };
        let rate = (median_rps("xgate").min(median_rps("nginx")) * 0.5).max(100.0);
        for server in [Server::Xgate, Server::Nginx] {
            let label = format!("open loop at {rate:.0} req/s");
            let runs = self.repeated(server, connections, &label, |suite| {
                suite.generator_run_at(server, connections, Some(rate))
            })?;
            cases.push(HttpCase {
                server: server.name().into(),
                client: OPEN_LOOP_CLIENT.into(),
                connections,
                runs,
            });
        }
        Ok(())
    }

    /// xgate with two lanes, closed loop, at the reference load and the largest count. This
    /// machine has two CPUs in all, so the second lane shares its CPU with the load generator:
    /// the figure shows what a second lane costs and gives when no core is free for it.
    pub(super) fn run_two_lanes(&mut self, cases: &mut Vec<HttpCase>) -> anyhow::Result<()> {
        for connections in self.plan.lanes_connections() {
            let runs = self.repeated(Server::XgateTwoLanes, connections, "xgate-bench", |suite| {
                suite.generator_run(Server::XgateTwoLanes, connections)
            })?;
            cases.push(HttpCase {
                server: TWO_LANES_SERVER.into(),
                client: "xgate-bench".into(),
                connections,
                runs,
            });
        }
        Ok(())
    }

    /// Proxy mode: xgate and nginx each as the one hop between the client and the same backend,
    /// and the client on the backend directly, closed loop at the plan's proxy connection counts;
    /// then all three in open loop at the reference count (see [`proxy_reference`]), at one rate
    /// for all: half the lower of the two proxies' closed-loop medians there, so that neither
    /// proxy is saturated. Only the cases the plan's sections keep run (`--only`). The backend
    /// runs (on the client's CPU) for the whole section and is stopped at its end.
    pub(super) fn run_proxy(&mut self, cases: &mut Vec<HttpCase>) -> anyhow::Result<()> {
        let counts = self.plan.proxy_connections.clone();
        let (Some(&most), Some(reference)) = (counts.iter().max(), proxy_reference(&counts)) else {
            return Ok(());
        };
        check_interrupted()?;
        // The backend holds the connections of whichever proxy runs, or the client's.
        let backend = self.start_nginx(NginxRole::Backend, most + UPSTREAM_MARGIN)?;
        let mut measure = || -> anyhow::Result<()> {
            for &connections in &counts {
                let planned: Vec<Server> = [Server::XgateProxy, Server::NginxProxy, Server::Direct]
                    .into_iter()
                    .zip(PROXY_CASES)
                    .filter(|&(_, case)| self.plan.runs(case))
                    .map(|(server, _)| server)
                    .collect();
                for server in planned {
                    let runs = self.repeated(server, connections, "xgate-bench", |suite| {
                        suite.generator_run(server, connections)
                    })?;
                    cases.push(HttpCase {
                        server: server.name().into(),
                        client: "xgate-bench".into(),
                        connections,
                        runs,
                    });
                }
            }
            let median_rps = |server: Server| {
                cases
                    .iter()
                    .find(|c| {
                        c.server == server.name() && c.client == "xgate-bench" && c.connections == reference
                    })
                    .and_then(|c| {
                        report::Spread::of(&c.runs.iter().map(|r| r.requests_per_second).collect::<Vec<_>>())
                    })
                    .map_or(0.0, |s| s.median)
            };
            if !self.plan.runs(Section::ProxyOpenLoop) {
                return Ok(());
            }
            let rate = (median_rps(Server::XgateProxy).min(median_rps(Server::NginxProxy)) * 0.5).max(100.0);
            for server in [Server::XgateProxy, Server::NginxProxy, Server::Direct] {
                let label = format!("open loop at {rate:.0} req/s");
                let runs = self.repeated(server, reference, &label, |suite| {
                    suite.generator_run_at(server, reference, Some(rate))
                })?;
                cases.push(HttpCase {
                    server: server.name().into(),
                    client: OPEN_LOOP_CLIENT.into(),
                    connections: reference,
                    runs,
                });
            }
            Ok(())
        };
        let result = measure();
        stop(backend, libc::SIGTERM);
        result
    }

    /// The reference connection count: 100 if the plan has it, else its first.
    pub(super) fn reference_connections(&self) -> usize {
        if self.plan.connections.contains(&100) {
            100
        } else {
            self.plan.connections[0]
        }
    }
}
