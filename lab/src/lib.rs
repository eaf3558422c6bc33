//! xgate's lab: the stand-in for a dedicated NIC and the hosts around it, for tests, the
//! benchmark harness and the demo, which link this crate directly.
//!
//! - [`netns`] builds and removes the network namespaces (client, gateway, backend) joined by
//!   veth through a bridge, with the addresses the docs fix;
//! - [`gateway_config`] is the gateway's configuration for the lab;
//! - [`flood`] sends a SYN flood from spoofed sources out of the client namespace;
//! - [`demo`] runs the whole slice end to end with real clients, for a person to watch.
//!
//! The gateway crate does not depend on this one: the lab is a user of the gateway's
//! configuration, never a part of it.

pub mod demo;
mod error;
pub mod flood;
pub mod netns;
pub mod sys;

pub use error::LabError;
pub use netns::{Host, Lab, DEFAULT_NAME};

use xgate_gateway::config::{Config, GatewayConfig};

/// The configuration the lab is made for: the gateway side of the lab (its interface, the
/// address xgate owns, its MAC), every other key at its default.
pub fn gateway_config() -> Config {
    Config::new(GatewayConfig::new(
        netns::GATEWAY_IFACE,
        netns::GATEWAY_IP,
        netns::PREFIX_LEN,
        netns::GATEWAY_MAC,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lab_config_round_trips_through_toml() {
        let mut config = gateway_config();
        assert_eq!(Config::parse(&config.to_toml(), "lab.toml").unwrap(), config);
        config.gateway.lanes = Some(2);
        config.gateway.cores = Some(vec![0, 1]);
        assert_eq!(Config::parse(&config.to_toml(), "lab.toml").unwrap(), config);
    }
}
