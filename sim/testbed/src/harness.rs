//! What differs between the two simulators that run a scenario, turmoil and madsim: which one
//! runs ([`Harness`]), the simulated clock and host names the shared code reads, and the
//! controls the fault schedule pulls ([`SimControl`]).
//!
//! A binary holds one of them at a time: madsim replaces the driver's tokio when built with
//! `--cfg madsim`, and turmoil's hosts need the real tokio, so the turmoil harness runs in the
//! normal build and the madsim harness in the `--cfg madsim` build (see the README).

use std::net::IpAddr;
use std::time::Duration;

/// The simulator that runs a scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Harness {
    /// turmoil: every host polled every tick (the normal build).
    #[default]
    Turmoil,
    /// madsim: event-driven, time jumps to the next event (the `--cfg madsim` build).
    Madsim,
}

impl Harness {
    /// The harness this binary was built for.
    pub const BUILT: Harness = if cfg!(madsim) {
        Harness::Madsim
    } else {
        Harness::Turmoil
    };

    pub fn name(self) -> &'static str {
        match self {
            Harness::Turmoil => "turmoil",
            Harness::Madsim => "madsim",
        }
    }
}

/// Why a binary cannot run the harness asked for.
pub fn unavailable_reason(wanted: Harness) -> Option<String> {
    match (wanted, Harness::BUILT) {
        (w, b) if w == b => None,
        (Harness::Madsim, _) => Some(
            "this fathom binary is the turmoil build; the madsim harness is a separate build: \
             RUSTFLAGS=\"--cfg madsim --cfg tokio_unstable\" cargo run --release \
             --target-dir target/madsim -- run SCENARIO --harness madsim"
                .into(),
        ),
        (Harness::Turmoil, _) => Some(
            "this fathom binary is the madsim build (--cfg madsim); the turmoil harness is the \
             normal build: cargo run --release -- run SCENARIO"
                .into(),
        ),
    }
}

/// Simulated time since the run started, as the running harness counts it (zero outside a
/// simulation).
pub fn sim_elapsed() -> Duration {
    #[cfg(not(madsim))]
    {
        turmoil::sim_elapsed().unwrap_or_default()
    }
    #[cfg(madsim)]
    {
        crate::madsim_run::sim_elapsed()
    }
}

/// The simulated host name behind an address.
pub fn host_name(ip: IpAddr) -> Option<String> {
    #[cfg(not(madsim))]
    {
        turmoil::reverse_lookup(ip)
    }
    #[cfg(madsim)]
    {
        crate::madsim_run::host_name(ip)
    }
}

/// What the fault schedule and the storage supervisor do to a simulation. Hosts are named as in
/// the scenario (`broker-1`, client process names).
pub trait SimControl {
    fn is_running(&mut self, host: &str) -> bool;
    /// Stops the host's software; unsynced writes on its disk are lost.
    fn crash(&mut self, host: &str);
    /// Starts the host's software afresh (crashing it first if it runs).
    fn bounce(&mut self, host: &str);
    /// Cuts both directions between two hosts.
    fn partition(&mut self, a: &str, b: &str);
    fn repair(&mut self, a: &str, b: &str);
    fn partition_oneway(&mut self, from: &str, to: &str);
    fn repair_oneway(&mut self, from: &str, to: &str);
    /// Holds messages between two hosts until released.
    fn hold(&mut self, a: &str, b: &str);
    fn release(&mut self, a: &str, b: &str);
    /// The network-wide chance that a message is lost.
    fn set_fail_rate(&mut self, rate: f64);
    fn set_link_fail_rate(&mut self, a: &str, b: &str, rate: f64);
    fn set_link_max_latency(&mut self, a: &str, b: &str, max: Duration);
}

impl SimControl for turmoil::Sim<'_> {
    fn is_running(&mut self, host: &str) -> bool {
        self.is_host_running(host)
    }
    fn crash(&mut self, host: &str) {
        turmoil::Sim::crash(self, host);
    }
    fn bounce(&mut self, host: &str) {
        turmoil::Sim::bounce(self, host);
    }
    fn partition(&mut self, a: &str, b: &str) {
        turmoil::Sim::partition(self, a, b);
    }
    fn repair(&mut self, a: &str, b: &str) {
        turmoil::Sim::repair(self, a, b);
    }
    fn partition_oneway(&mut self, from: &str, to: &str) {
        turmoil::Sim::partition_oneway(self, from, to);
    }
    fn repair_oneway(&mut self, from: &str, to: &str) {
        turmoil::Sim::repair_oneway(self, from, to);
    }
    fn hold(&mut self, a: &str, b: &str) {
        turmoil::Sim::hold(self, a, b);
    }
    fn release(&mut self, a: &str, b: &str) {
        turmoil::Sim::release(self, a, b);
    }
    fn set_fail_rate(&mut self, rate: f64) {
        turmoil::Sim::set_fail_rate(self, rate);
    }
    fn set_link_fail_rate(&mut self, a: &str, b: &str, rate: f64) {
        turmoil::Sim::set_link_fail_rate(self, a, b, rate);
    }
    fn set_link_max_latency(&mut self, a: &str, b: &str, max: Duration) {
        self.set_link_max_message_latency(a, b, max);
    }
}
