//! Network namespaces for partition tests: each NATS node in its own
//! namespace, joined to the host by a veth pair on a private bridge, so a
//! node can be cut off from its peers and from Herald (the host side of its
//! link goes down) and joined again.
//!
//! Needs root (or CAP_NET_ADMIN) and iproute2. [`Netns::create`] says why it
//! cannot when it cannot, and the test skips only the partition part.
use std::process::Command;

use crate::nats::Placement;

pub struct Netns {
    namespaces: Vec<String>,
    host_links: Vec<String>,
    bridge: String,
    pub hosts: Vec<String>,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Netns {
    /// `n` namespaces on a fresh bridge with a random private /24; every
    /// name carries a random tag, so concurrent runs do not collide.
    pub fn create(n: usize) -> Result<Netns, String> {
        let tag = format!("{:04x}", fastrand::u16(..));
        let (a, b) = (fastrand::u8(100..200), fastrand::u8(1..255));
        let mut me = Netns {
            namespaces: Vec::new(),
            host_links: Vec::new(),
            bridge: format!("hb{tag}"),
            hosts: Vec::new(),
        };
        ip(&["link", "add", &me.bridge, "type", "bridge"])?;
        ip(&[
            "addr",
            "add",
            &format!("10.{a}.{b}.1/24"),
            "dev",
            &me.bridge,
        ])?;
        ip(&["link", "set", &me.bridge, "up"])?;
        for i in 0..n {
            let ns = format!("hn{tag}{i}");
            let host_side = format!("hv{tag}{i}");
            let peer = format!("hp{tag}{i}");
            let addr = format!("10.{a}.{b}.{}", i + 2);
            ip(&["netns", "add", &ns])?;
            me.namespaces.push(ns.clone());
            ip(&[
                "link", "add", &host_side, "type", "veth", "peer", "name", &peer,
            ])?;
            me.host_links.push(host_side.clone());
            ip(&["link", "set", &peer, "netns", &ns])?;
            ip(&["link", "set", &host_side, "master", &me.bridge])?;
            ip(&["link", "set", &host_side, "up"])?;
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                &peer,
            ])?;
            ip(&["-n", &ns, "link", "set", &peer, "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            me.hosts.push(addr);
        }
        Ok(me)
    }

    /// Where a cluster's nodes go: node i in namespace i.
    pub fn placement(&self) -> Placement {
        Placement::Namespaces {
            hosts: self.hosts.clone(),
            wrappers: self
                .namespaces
                .iter()
                .map(|ns| vec!["ip".into(), "netns".into(), "exec".into(), ns.clone()])
                .collect(),
        }
    }

    /// Cut node `i` off from everything (its peers and the host's processes).
    pub fn isolate(&self, i: usize) -> Result<(), String> {
        ip(&["link", "set", &self.host_links[i], "down"])
    }

    /// Join node `i` again.
    pub fn heal(&self, i: usize) -> Result<(), String> {
        ip(&["link", "set", &self.host_links[i], "up"])
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting a namespace deletes its end of the veth pair, and with it
        // the host's end.
        for ns in &self.namespaces {
            let _ = ip(&["netns", "del", ns]);
        }
        for link in &self.host_links {
            let _ = ip(&["link", "del", link]);
        }
        let _ = ip(&["link", "del", &self.bridge]);
    }
}
