//! `xgate-bench`: xgate's benchmark harness.
//!
//! Subcommands:
//! - `http`: an HTTP/1.1 load generator on xgate's own userspace stack (smoltcp over AF_XDP),
//!   closed- or open-loop, with HdrHistogram latencies (see `loadgen`).
//! - `packets`: the packet path, AF_XDP receive vs XDP_DROP on the same veth (see `packets`).
//! - `suite`: the whole comparison, xgate vs nginx in the lab, written to `bench/results/` (see
//!   `suite`).
//! - `report`: the markdown and plots of a finished suite run, written again from its JSON.

mod cpu;
mod loadgen;
mod packets;
mod process;
mod report;
mod results;
mod suite;
mod sys;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xgate-bench", version, about = "xgate's benchmark harness")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// HTTP load generator over AF_XDP (run inside the client namespace, needs root).
    Http(loadgen::HttpArgs),
    /// Packet path: frames/s into an AF_XDP socket vs XDP_DROP on the same veth (needs root).
    Packets(packets::PacketArgs),
    /// The whole suite: xgate vs nginx in the lab, then the packet path (needs root).
    Suite(suite::SuiteArgs),
    /// Write the markdown and plots of a finished suite run again from its JSON.
    Report(suite::ReportArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Http(args) => loadgen::run(&args),
        Command::Packets(args) => packets::run(&args),
        Command::Suite(args) => suite::run(&args),
        Command::Report(args) => suite::rerender(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xgate-bench: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
