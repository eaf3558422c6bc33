//! `xgate demo`: the whole slice end to end with a real client, for a person to watch.
//!
//! Builds the lab, starts `xgate run` in the gateway namespace, pings the gateway, sends requests
//! with curl (and a short wrk run) from the client namespace, prints the answers and a latency
//! summary, stops the
//! gateway and removes the lab, also when a step fails.

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use crate::{
    netns::{self as lab, Host, Lab},
    LabError,
};

/// Removes the lab and stops the gateway when dropped.
struct Cleanup {
    lab: Lab,
    gateway: Option<Child>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(child) = self.gateway.as_mut() {
            stop_child(child);
        }
        if let Err(e) = self.lab.down() {
            eprintln!("xgate demo: removing the lab failed: {e}");
        }
    }
}

fn stop_child(child: &mut Child) {
    // The child is ours and not reaped yet, so its pid is still its own.
    let _ = xgate_gateway::sys::send_signal(child.id() as i32, libc::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn output_of(cmd: &mut Command) -> Result<String, LabError> {
    let out = cmd.output().map_err(|cause| LabError::CannotRun {
        program: format!("{cmd:?}"),
        cause,
        hint: "",
    })?;
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        return Err(LabError::Failed {
            command: format!("{cmd:?}"),
            output: text.trim().to_string(),
        });
    }
    Ok(text)
}

/// Percentile `p` (0..=100) of sorted `values`, nearest rank.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

/// Runs the demo on lab `name` with the `xgate` binary at `xgate`, sending `requests` requests
/// over one keep-alive connection for the latency summary.
pub fn run(xgate: &std::path::Path, name: &str, requests: usize) -> Result<(), LabError> {
    let lab = Lab::new(name)?;
    println!("== building the lab `{name}`");
    lab.up()?;
    let mut cleanup = Cleanup {
        lab: lab.clone(),
        gateway: None,
    };
    let config_path = std::env::temp_dir().join(format!("xgate-{name}.toml"));
    std::fs::write(&config_path, crate::gateway_config().to_toml())
        .map_err(LabError::io(format!("writing {}", config_path.display())))?;

    println!("== starting xgate in {}", lab.netns(Host::Gateway));
    let mut child = lab
        .command(
            Host::Gateway,
            xgate
                .to_str()
                .ok_or_else(|| LabError::Refused("executable path is not UTF-8".into()))?,
        )
        .args([
            "run",
            "--config",
            config_path
                .to_str()
                .ok_or_else(|| LabError::Refused("config path is not UTF-8".into()))?,
        ])
        .stdout(Stdio::piped())
        .spawn()
        .map_err(LabError::io("starting xgate"))?;
    let stdout = child.stdout.take().expect("piped");
    cleanup.gateway = Some(child);
    let (lines_tx, lines_rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let ready = lines_rx
        .recv_timeout(Duration::from_secs(30))
        .map_err(|_| LabError::Demo("xgate did not report ready within 30 s".into()))?;
    println!("xgate: {ready}");

    let gateway = lab::GATEWAY_IP.to_string();
    println!("\n== ping {gateway} (answered by xgate's userspace stack)");
    print!(
        "{}",
        output_of(
            lab.command(Host::Client, "ping")
                .args(["-c", "3", "-i", "0.2", "-W", "2", &gateway])
        )?
    );

    for (method, path) in [("GET", "/healthz"), ("GET", "/nope"), ("POST", "/healthz")] {
        println!("\n== curl -i -X {method} http://{gateway}{path}");
        let text = output_of(lab.command(Host::Client, "curl").args([
            "-sS",
            "-i",
            "--max-time",
            "5",
            "-X",
            method,
            &format!("http://{gateway}{path}"),
        ]))?;
        print!("{text}");
        if !text.ends_with('\n') {
            println!();
        }
    }

    println!("\n== {requests} x GET /healthz over one keep-alive connection (curl)");
    let url = format!("http://{gateway}/healthz");
    let mut curl = lab.command(Host::Client, "curl");
    curl.args([
        "-s",
        "--max-time",
        "60",
        "-w",
        "%{http_code} %{time_total} %{num_connects}\\n",
    ]);
    for _ in 0..requests {
        curl.args(["-o", "/dev/null", &url]);
    }
    let started = Instant::now();
    let text = output_of(&mut curl).unwrap_or_else(|e| e.to_string());
    let elapsed = started.elapsed();
    let mut latencies_ms = Vec::with_capacity(requests);
    let (mut ok, mut errors, mut connects) = (0usize, 0usize, 0usize);
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let (Some(code), Some(time), Some(conns)) = (fields.next(), fields.next(), fields.next()) else {
            continue;
        };
        connects += conns.parse::<usize>().unwrap_or(0);
        if code == "200" {
            ok += 1;
            latencies_ms.push(time.parse::<f64>().unwrap_or(f64::NAN) * 1000.0);
        } else {
            errors += 1;
        }
    }
    errors += requests.saturating_sub(ok + errors);
    latencies_ms.sort_by(|a, b| a.total_cmp(b));
    println!(
        "requests: {requests}, 200 OK: {ok}, errors: {errors}, TCP connections opened: {connects}, wall time {:.2} s",
        elapsed.as_secs_f64()
    );
    println!(
        "latency per request (curl time_total): p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        percentile(&latencies_ms, 50.0),
        percentile(&latencies_ms, 99.0),
        latencies_ms.last().copied().unwrap_or(f64::NAN)
    );

    println!("\n== wrk: 20 keep-alive connections for 3 s (one client thread)");
    match output_of(
        lab.command(Host::Client, "wrk")
            .args(["-t1", "-c20", "-d3s", "--latency", &url]),
    ) {
        Ok(text) => {
            for line in text.lines().filter(|l| {
                let l = l.trim_start();
                l.starts_with("50%")
                    || l.starts_with("99%")
                    || l.starts_with("Requests/sec")
                    || l.contains("requests in")
                    || l.starts_with("Non-2xx")
                    || l.starts_with("Socket errors")
            }) {
                println!("{}", line.trim());
            }
        }
        Err(e) => println!("wrk did not run ({e}); install it with scripts/bootstrap.sh"),
    }

    println!("\n== stopping xgate");
    if let Some(child) = cleanup.gateway.as_mut() {
        stop_child(child);
    }
    cleanup.gateway = None;
    while let Ok(line) = lines_rx.recv_timeout(Duration::from_millis(500)) {
        println!("xgate: {line}");
    }
    println!("\n== removing the lab");
    drop(cleanup);
    let _ = std::fs::remove_file(&config_path);
    if errors > 0 {
        return Err(LabError::Demo(format!("{errors} of {requests} requests failed")));
    }
    println!("done");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&v, 100.0), 100.0);
        assert_eq!(percentile(&[7.0], 99.0), 7.0);
        assert!(percentile(&[], 50.0).is_nan());
    }
}
