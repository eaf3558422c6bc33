//! The SYN-flood section: the keep-alive and the new-connection loads against a fresh server,
//! without and then under `xgate lab flood` aimed at its address.

use std::{
    path::Path,
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use serde_json::Value;

use crate::{
    process::check_interrupted,
    results::{FirstTimeRun, FloodCase, FloodRun, FLOOD_POOL_MARGIN},
};

use super::{
    lab::{in_namespace, CLIENT_CPU, CLIENT_NS, LAB},
    runs::OutputWithTimeout,
    servers::{Guarded, Server},
    Suite,
};

/// How long the flood runs before a measurement starts under it.
const FLOOD_LEAD: Duration = Duration::from_millis(300);
/// The first-time clients' addresses without and under the flood (disjoint: an address that
/// connected once is no longer new to the server).
const FIRST_TIME_QUIET: (u8, u8) = (101, 150);
const FIRST_TIME_FLOODED: (u8, u8) = (151, 200);
const FIRST_TIME_CONCURRENCY: usize = 10;
/// Seconds the flood runs for the first-time clients (they take well under one).
const FIRST_TIME_SECONDS: f64 = 3.0;
static FIRST_TIME_SCRIPT: &str = include_str!("first_time.py");

impl Suite {
    /// SYN flood: against a fresh xgate and a fresh nginx, `repeats` times each, the keep-alive
    /// load (xgate-bench, closed loop, the reference count) and the new-connection load (ab, one
    /// connection per request), each without and then under `xgate lab flood` aimed at the
    /// server's address. The flood runs on the client's CPU, and so does its delivery (veth runs
    /// the receiver's XDP and kernel input on the sender's CPU): the server's CPU sees what its
    /// defense lets through.
    pub(super) fn run_flood(&mut self) -> anyhow::Result<Vec<FloodCase>> {
        let connections = self.reference_connections();
        let mut cases = Vec::new();
        for server in [Server::Xgate, Server::Nginx] {
            let mut runs = Vec::new();
            for repeat in 0..self.plan.repeats {
                // xgate's pool: the connections plus room for what the flood may hold.
                let run = self.with_fresh_server(server, connections + FLOOD_POOL_MARGIN, |suite, _| {
                    suite.flood_run(server, connections)
                })?;
                self.progress.step(&format!(
                    "{} SYN flood run {}/{}: keep-alive {:.0} -> {:.0} req/s, new connections {:.0} -> {:.0}/s, flood {:.0} SYN/s",
                    server.name(),
                    repeat + 1,
                    self.plan.repeats,
                    run.keepalive_quiet.requests_per_second,
                    run.keepalive_flooded.requests_per_second,
                    run.new_connections_quiet.requests_per_second,
                    run.new_connections_flooded.requests_per_second,
                    run.flood_syn_per_second[0],
                ));
                runs.push(run);
            }
            cases.push(FloodCase {
                server: server.name().into(),
                connections,
                runs,
            });
        }
        Ok(cases)
    }

    /// One repeat of the flood section on a running `server`: both loads quiet, then both under
    /// a flood.
    fn flood_run(&self, server: Server, connections: usize) -> anyhow::Result<FloodRun> {
        let keepalive_quiet = self.generator_run(server, connections)?;
        let new_connections_quiet = self.ab_run(server)?;
        // The keep-alive load connects first, then warms up and measures.
        let keepalive_seconds = self.plan.warmup_seconds + self.plan.duration_seconds + 1.0;
        let (keepalive_flooded, keepalive_flood) = self.under_flood(server, keepalive_seconds, |suite| {
            suite.generator_run(server, connections)
        })?;
        let (new_connections_flooded, new_connections_flood) =
            self.under_flood(server, self.ab_seconds() as f64 + 0.5, |suite| {
                suite.ab_run(server)
            })?;
        let first_time_quiet = self.first_time_run(server, FIRST_TIME_QUIET)?;
        let (first_time_flooded, _) = self.under_flood(server, FIRST_TIME_SECONDS, |suite| {
            suite.first_time_run(server, FIRST_TIME_FLOODED)
        })?;
        Ok(FloodRun {
            keepalive_quiet,
            keepalive_flooded,
            new_connections_quiet,
            new_connections_flooded,
            flood_syn_per_second: [keepalive_flood, new_connections_flood],
            first_time_quiet,
            first_time_flooded,
        })
    }

    /// One connection from each client address `10.77.0.<first..=last>` (new to a freshly
    /// started server), [`FIRST_TIME_CONCURRENCY`] at a time (`first_time.py`, Python's kernel
    /// sockets in the client namespace).
    fn first_time_run(&self, server: Server, (first, last): (u8, u8)) -> anyhow::Result<FirstTimeRun> {
        let target = server.target();
        let (address, port) = target.split_once(':').context("a server target is ip:port")?;
        let output = in_namespace(CLIENT_NS, CLIENT_CPU, Path::new("python3"))
            .args(["-c", FIRST_TIME_SCRIPT, address, port, "/healthz"])
            .args([
                first.to_string(),
                last.to_string(),
                FIRST_TIME_CONCURRENCY.to_string(),
            ])
            .stderr(Stdio::piped())
            .output_with_timeout(Duration::from_secs(60))?;
        let text = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            bail!(
                "first-time clients against {} failed: {}",
                server.name(),
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        serde_json::from_str(text.trim()).with_context(|| format!("reading first_time.py's output: {text:?}"))
    }

    /// Runs `measure` while `xgate lab flood` sends SYNs from spoofed sources to `server`'s
    /// address, for `seconds` after a lead of [`FLOOD_LEAD`]; returns what `measure` gave and the
    /// flood's rate (SYN/s).
    fn under_flood<T>(
        &self,
        server: Server,
        seconds: f64,
        measure: impl FnOnce(&Self) -> anyhow::Result<T>,
    ) -> anyhow::Result<(T, f64)> {
        let address = server.target().split(':').next().unwrap_or_default();
        let flood_seconds = seconds + FLOOD_LEAD.as_secs_f64();
        let mut flood = Guarded(
            in_namespace(CLIENT_NS, CLIENT_CPU, &self.xgate)
                .args(["lab", "flood", "--name", LAB, "--to", address])
                .args(["--seconds", &format!("{flood_seconds:.2}")])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .context("starting xgate lab flood")?,
        );
        std::thread::sleep(FLOOD_LEAD);
        let measured = measure(self);
        // The flood ends on its own; the measurement's result waits for it.
        let deadline = Instant::now() + Duration::from_secs_f64(flood_seconds + 10.0);
        let status = loop {
            if let Some(status) = flood.0.try_wait()? {
                break status;
            }
            if Instant::now() > deadline {
                bail!("xgate lab flood ran over its {flood_seconds:.1} s");
            }
            check_interrupted()?;
            std::thread::sleep(Duration::from_millis(20));
        };
        let read = |pipe: Option<&mut dyn std::io::Read>| {
            let mut text = String::new();
            if let Some(pipe) = pipe {
                let _ = pipe.read_to_string(&mut text);
            }
            text
        };
        let stdout = read(flood.0.stdout.as_mut().map(|p| p as &mut dyn std::io::Read));
        let stderr = read(flood.0.stderr.as_mut().map(|p| p as &mut dyn std::io::Read));
        let measured = measured?;
        if !status.success() {
            bail!("xgate lab flood failed: {}", stderr.trim());
        }
        let rate = serde_json::from_str::<Value>(&stdout)
            .ok()
            .and_then(|v| v.get("rate")?.as_f64())
            .with_context(|| format!("reading xgate lab flood's output: {stdout:?}"))?;
        Ok((measured, rate))
    }
}
