//! One measured run of one client against a running server: the userspace load generator
//! (closed or open loop), wrk, ab (one connection per request), and a perf profile of xgate; every
//! child bounded by a deadline.

use std::{
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use serde_json::Value;

use crate::{
    cpu::{children_cpu_time, MachineCpu},
    process::{check_interrupted, interrupted},
    report,
    results::{NewConnectionRun, RunFigures, NEW_CONNECTION_CLIENTS},
};

use super::{
    lab::{in_namespace, CLIENT_CPU, CLIENT_NS},
    servers::{Guarded, Server},
    Suite,
};

impl Suite {
    pub(super) fn generator_run(&self, server: Server, connections: usize) -> anyhow::Result<RunFigures> {
        self.generator_run_at(server, connections, None)
    }

    /// One `xgate-bench http` run: closed loop, or open loop at `rate` requests/s.
    pub(super) fn generator_run_at(
        &self,
        server: Server,
        connections: usize,
        rate: Option<f64>,
    ) -> anyhow::Result<RunFigures> {
        let timeout = self.plan.warmup_seconds + self.plan.duration_seconds + 60.0;
        let mut command = in_namespace(CLIENT_NS, CLIENT_CPU, &self.bench);
        command.args(["http", "--target", server.target(), "--json"]);
        if let Some(rate) = rate {
            command.args(["--mode", "open", "--rate", &format!("{rate:.0}")]);
        }
        let output = command
            .args(["--connections", &connections.to_string()])
            .args(["--duration", &self.plan.duration_seconds.to_string()])
            .args(["--warmup", &self.plan.warmup_seconds.to_string()])
            .args(["--connect-timeout", "30"])
            .stderr(Stdio::piped())
            .output_with_timeout(Duration::from_secs_f64(timeout))?;
        if !output.status.success() {
            bail!(
                "xgate-bench http against {} at {connections} connections failed: {}",
                server.name(),
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        let report: Value =
            serde_json::from_slice(&output.stdout).context("parsing xgate-bench http output")?;
        let number = |path: &[&str]| -> f64 {
            path.iter()
                .try_fold(&report, |v, key| v.get(key))
                .and_then(Value::as_f64)
                .unwrap_or(0.0)
        };
        let requests = number(&["requests"]);
        let errors = ["connect", "closed_by_server", "bad_response", "non_2xx"]
            .iter()
            .map(|kind| number(&["errors", kind]) as u64)
            .sum();
        let server_cpu = (number(&["machine_busy_seconds"]) - number(&["generator_cpu_seconds"])).max(0.0);
        let cdf = report
            .get("cdf")
            .and_then(Value::as_array)
            .map(|points| {
                points
                    .iter()
                    .filter_map(|p| Some((p.get(0)?.as_f64()?, p.get(1)?.as_f64()?)))
                    .collect()
            })
            .unwrap_or_default();
        Ok(RunFigures {
            requests_per_second: number(&["requests_per_second"]),
            p50_us: number(&["latency_us", "p50"]),
            p90_us: number(&["latency_us", "p90"]),
            p99_us: number(&["latency_us", "p99"]),
            p999_us: number(&["latency_us", "p999"]),
            errors,
            client_rx_dropped: number(&["kernel_rx_dropped"]) as u64,
            client_tx_starved: number(&["tx_starved"]) as u64,
            client_idle_fraction: Some(number(&["generator_idle_fraction"])),
            error_kinds: serde_json::json!({
                "by_kind": report.get("errors").cloned().unwrap_or(Value::Null),
                "connect_retries": report.get("connect_retries").cloned().unwrap_or(Value::Null),
                "open_loop_unfinished": report.get("open_loop_unfinished").cloned().unwrap_or(Value::Null),
            }),
            cpu_us_per_request: if requests > 0.0 {
                server_cpu * 1e6 / requests
            } else {
                0.0
            },
            machine_cpu_us_per_request: if requests > 0.0 {
                number(&["machine_busy_seconds"]) * 1e6 / requests
            } else {
                0.0
            },
            response_bytes: number(&["response_bytes"]) as u64,
            offered_rate: rate,
            cdf,
            upstream: None,
        })
    }

    pub(super) fn wrk_run(&self, server: Server, connections: usize) -> anyhow::Result<RunFigures> {
        let seconds = (self.plan.duration_seconds.ceil() as u64).max(1);
        let machine_before = MachineCpu::sample();
        let children_before = children_cpu_time();
        let output = in_namespace(CLIENT_NS, CLIENT_CPU, Path::new("wrk"))
            .args([
                "-t1",
                "-c",
                &connections.to_string(),
                "-d",
                &format!("{seconds}s"),
            ])
            .args(["--timeout", "5s", "--latency"])
            .arg(server.healthz_url())
            .stderr(Stdio::piped())
            .output_with_timeout(Duration::from_secs(seconds + 60))?;
        let machine_busy = MachineCpu::sample().busy_since(&machine_before);
        let wrk_cpu = children_cpu_time().saturating_sub(children_before);
        if !output.status.success() {
            bail!(
                "wrk against {} failed: {}",
                server.name(),
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        let text = String::from_utf8_lossy(&output.stdout);
        let (mut figures, completed) =
            report::parse_wrk(&text).with_context(|| format!("could not read wrk's output:\n{text}"))?;
        let requests = completed as f64;
        if requests > 0.0 {
            figures.cpu_us_per_request = machine_busy.saturating_sub(wrk_cpu).as_secs_f64() * 1e6 / requests;
            figures.machine_cpu_us_per_request = machine_busy.as_secs_f64() * 1e6 / requests;
        }
        Ok(figures)
    }

    /// Records xgate's CPU profile (its own threads, user and kernel) during one generator run at
    /// `connections`; returns the top symbols by self time.
    pub(super) fn profile_xgate(&self, server: &Guarded, connections: usize) -> anyhow::Result<Vec<String>> {
        let data = self.work.join("perf.data");
        let seconds = self.plan.duration_seconds.max(3.0);
        let mut perf = Command::new("perf")
            .args(["record", "-F", "999", "-g", "-o"])
            .arg(&data)
            .args(["-p", &server.0.id().to_string(), "--", "sleep"])
            .arg(format!("{}", seconds + self.plan.warmup_seconds))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting perf (install linux-perf)")?;
        let _ = self.generator_run(Server::Xgate, connections);
        let _ = perf.wait();
        let report = Command::new("perf")
            .args([
                "report",
                "--stdio",
                "--no-children",
                "--sort",
                "dso,symbol",
                "-g",
                "none",
                "-i",
            ])
            .arg(&data)
            .output()?;
        let text = String::from_utf8_lossy(&report.stdout);
        Ok(text
            .lines()
            .filter(|l| !l.starts_with('#') && l.contains('%'))
            .take(15)
            .map(|l| {
                l.split_whitespace()
                    .filter(|word| *word != "-")
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect())
    }

    /// Seconds the new-connection load runs (ab counts whole seconds).
    pub(super) fn ab_seconds(&self) -> u64 {
        (self.plan.duration_seconds.ceil() as u64).max(1)
    }

    /// The new-connection load: ab (HTTP/1.0, one connection per request),
    /// [`NEW_CONNECTION_CLIENTS`] at a time, for [`Suite::ab_seconds`]; socket errors are counted,
    /// not fatal (`-r`).
    pub(super) fn ab_run(&self, server: Server) -> anyhow::Result<NewConnectionRun> {
        let seconds = self.ab_seconds();
        let output = in_namespace(CLIENT_NS, CLIENT_CPU, Path::new("ab"))
            .args(["-q", "-r", "-s", "5", "-c", &NEW_CONNECTION_CLIENTS.to_string()])
            // -n after -t: the time limit ends the run, the count only sizes ab's table.
            .args(["-t", &seconds.to_string(), "-n", "1000000"])
            .arg(server.healthz_url())
            .stderr(Stdio::piped())
            .output_with_timeout(Duration::from_secs(seconds + 60))?;
        let text = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            bail!(
                "ab against {} failed: {} {}",
                server.name(),
                String::from_utf8_lossy(&output.stderr).trim(),
                text.trim()
            );
        }
        report::parse_ab(&text).with_context(|| format!("could not read ab's output:\n{text}"))
    }
}

/// `Command::output` with a deadline: the child is killed when it runs over.
pub(super) trait OutputWithTimeout {
    fn output_with_timeout(&mut self, limit: Duration) -> anyhow::Result<std::process::Output>;
}

impl OutputWithTimeout for Command {
    fn output_with_timeout(&mut self, limit: Duration) -> anyhow::Result<std::process::Output> {
        use std::io::Read;
        let mut child = self.stdout(Stdio::piped()).spawn()?;
        // Readers drain the pipes so the child never blocks on a full one.
        let drain = |pipe: Option<Box<dyn Read + Send>>| {
            std::thread::spawn(move || {
                let mut bytes = Vec::new();
                if let Some(mut pipe) = pipe {
                    let _ = pipe.read_to_end(&mut bytes);
                }
                bytes
            })
        };
        let stdout = drain(child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
        let stderr = drain(child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
        let start = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break status;
            }
            if start.elapsed() > limit || interrupted() {
                // The child is not reaped yet, so its pid cannot have been reused.
                let _ = child.kill();
                let _ = child.wait();
                check_interrupted()?;
                bail!("a benchmark child ran over its {limit:?} deadline and was killed");
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        Ok(std::process::Output {
            status,
            stdout: stdout.join().unwrap_or_default(),
            stderr: stderr.join().unwrap_or_default(),
        })
    }
}
