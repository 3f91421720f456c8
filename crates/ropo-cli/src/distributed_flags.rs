//! The `Distributed` options of `train`: how many ranks share each step on this machine, how
//! long rank 0 waits for them, and the machines of a multi-node run (flags, or torchrun's
//! environment variables where a flag is not given).

use std::{
    net::{SocketAddr, ToSocketAddrs, UdpSocket},
    time::Duration,
};

use clap::Args;
use ropo::train::data_parallel::{DataParallel, Nodes};

/// The options that spread training over ranks and machines.
#[derive(Args, Default)]
pub struct DistributedFlags {
    /// Ranks sharing each preference step, threads on this machine with a device each (default
    /// 1); each takes a share of every batch, and their gradients are summed before clipping and
    /// AdamW. The reference pass, evaluation and the filter's scoring are shared out too. Not
    /// kept in the run: a run resumes with any number.
    #[arg(long, help_heading = "Distributed")]
    data_parallel: Option<usize>,
    /// Seconds rank 0 waits for a data-parallel peer, another node, or the all-reduce, before
    /// ending the run (default 600).
    #[arg(long, help_heading = "Distributed", aliases = ["ddp_timeout", "ddp-timeout"])]
    peer_timeout: Option<u64>,
    /// Machines in the run, one `train` process each with its own --data-parallel ranks
    /// (default: $WORLD_SIZE, else 1). Every node gives the same flags but --node-rank.
    #[arg(long, help_heading = "Distributed")]
    nodes: Option<usize>,
    /// This machine's place among the nodes, 0 to nodes − 1 (default: $RANK). Node 0 alone
    /// writes the run folder; the others read its checkpoints on --resume.
    #[arg(long, help_heading = "Distributed")]
    node_rank: Option<usize>,
    /// HOST:PORT of the run's `ropo coordinator` (default: $MASTER_ADDR:$MASTER_PORT).
    #[arg(long, help_heading = "Distributed")]
    coordinator: Option<String>,
    /// HOST:PORT where the other nodes reach this one (default: this machine's address toward
    /// the coordinator, port: the coordinator's + 1 + --node-rank).
    #[arg(long, help_heading = "Distributed")]
    node_address: Option<String>,
}

impl DistributedFlags {
    /// The ranks the flags ask for over every node (1 without `--data-parallel` or `--nodes`).
    pub fn ranks(&self) -> usize {
        let peers = self.data_parallel.unwrap_or(DataParallel::default().peers);
        peers * self.node_count().ok().flatten().unwrap_or(1)
    }

    /// Applies the flags given to `settings` (the rest keep their defaults) and checks the
    /// ranks against the run's `batch`. These settings come only from the command line and the
    /// environment (a run folder does not keep them), so their errors name no config file.
    pub fn apply(&self, settings: &mut DataParallel, batch: usize) -> Result<(), String> {
        if let Some(peers) = self.data_parallel {
            settings.peers = peers;
        }
        if let Some(seconds) = self.peer_timeout {
            settings.timeout = Duration::from_secs(seconds);
        }
        settings.nodes = self.nodes()?;
        settings.check(batch)
    }

    /// `--nodes`, else `$WORLD_SIZE`; `None` when neither is given.
    fn node_count(&self) -> Result<Option<usize>, String> {
        match self.nodes {
            Some(count) => Ok(Some(count)),
            None => environment("WORLD_SIZE", "--nodes"),
        }
    }

    /// The run's machines, `None` for a run on this machine alone (one node).
    fn nodes(&self) -> Result<Option<Nodes>, String> {
        let count = self.node_count()?.unwrap_or(1);
        if count == 0 {
            return Err("--nodes: give at least 1".into());
        }
        if count == 1 {
            return Ok(None);
        }
        let rank = match self.node_rank {
            Some(rank) => rank,
            None => environment("RANK", "--node-rank")?.ok_or(format!(
                "--nodes {count}: give this node's --node-rank (or RANK)"
            ))?,
        };
        if rank >= count {
            return Err(format!(
                "--node-rank {rank}: give 0 to {} for --nodes {count}",
                count - 1
            ));
        }
        let coordinator = match &self.coordinator {
            Some(given) => resolve("--coordinator", given)?,
            None => {
                let host = std::env::var("MASTER_ADDR").ok();
                let port = std::env::var("MASTER_PORT").ok();
                let (Some(host), Some(port)) = (host, port) else {
                    return Err(format!(
                        "--nodes {count}: give --coordinator HOST:PORT (or MASTER_ADDR and \
                         MASTER_PORT), where `ropo coordinator` listens"
                    ));
                };
                resolve("MASTER_ADDR:MASTER_PORT", &format!("{host}:{port}"))?
            }
        };
        let address = match &self.node_address {
            Some(given) => resolve("--node-address", given)?,
            None => own_address(coordinator, rank)?,
        };
        if address == coordinator {
            return Err(format!(
                "--node-address {address} is the coordinator's; give this node another port"
            ));
        }
        Ok(Some(Nodes {
            count,
            rank,
            coordinator,
            address,
        }))
    }
}

/// The number in environment variable `name`, `None` when it is unset; `flag` is the flag
/// that stands for it.
fn environment(name: &str, flag: &str) -> Result<Option<usize>, String> {
    match std::env::var(name) {
        Ok(value) => value
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| format!("{name}={value:?} (read for {flag}): not a whole number")),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(e) => Err(format!("{name} (read for {flag}): {e}")),
    }
}

/// `given` (`HOST:PORT`) as a socket address, its host looked up.
fn resolve(what: &str, given: &str) -> Result<SocketAddr, String> {
    given
        .to_socket_addrs()
        .map_err(|e| format!("{what} {given}: {e} (give HOST:PORT)"))?
        .next()
        .ok_or(format!("{what} {given}: the host has no address"))
}

/// This machine's address on the route to `coordinator` (a UDP socket connected there sends
/// nothing but learns its local address), with port `coordinator's + 1 + rank`.
fn own_address(coordinator: SocketAddr, rank: usize) -> Result<SocketAddr, String> {
    let unspecified: SocketAddr = match coordinator {
        SocketAddr::V4(_) => ([0, 0, 0, 0], 0).into(),
        SocketAddr::V6(_) => ([0u16; 8], 0).into(),
    };
    let route = |e: std::io::Error| {
        format!(
            "no route from this machine to the coordinator {coordinator}: {e}; give --node-address"
        )
    };
    let socket = UdpSocket::bind(unspecified).map_err(route)?;
    socket.connect(coordinator).map_err(route)?;
    let ip = socket.local_addr().map_err(route)?.ip();
    let port = u16::try_from(usize::from(coordinator.port()) + 1 + rank).map_err(|_| {
        format!(
            "--coordinator port {}: no port left for node {rank}; give --node-address",
            coordinator.port()
        )
    })?;
    Ok(SocketAddr::new(ip, port))
}
