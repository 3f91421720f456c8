//! The machines of a multi-node run: how many, this one's place among them, where the
//! coordinator is and where the others reach this node. They become burn-collective's global
//! settings; the roll call checks at the start that every node runs the same run from the
//! same step, and when a node stops answering, [`Nodes::gone`] names the ones that are gone.

use std::{
    net::{SocketAddr, TcpStream},
    time::{Duration, Instant},
};

use burn::collective::CollectiveConfig;
use ropo_data::TokenizedPair;

/// The nodes of a run: one ropo process per machine, each with its own data-parallel ranks,
/// joined through a coordinator (`cargo xtask coordinator`). Node 0 alone writes the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Nodes {
    /// Nodes in the run (at least 2).
    pub count: usize,
    /// This node's rank, `0..count`.
    pub rank: usize,
    /// The coordinator, as every node reaches it.
    pub coordinator: SocketAddr,
    /// Where the other nodes reach this node's tensor service (its port is opened here).
    pub address: SocketAddr,
}

/// What each node says of itself in the roll call: the run it is about to train.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RollCall {
    /// The preference step it starts from (0 on a fresh run, the checkpoint's on a resume).
    pub step: usize,
    /// Its training pairs.
    pub pairs: usize,
    /// Its data-parallel ranks.
    pub ranks: usize,
    /// [`fingerprint`] of its training pairs.
    pub fingerprint: u64,
}

/// Entries of one node's row in the roll call: present, step, pairs, ranks, the fingerprint
/// in four 16-bit pieces, then the address's bytes.
const HEADER: usize = 8;
/// The longest address a roll call carries, in bytes (an IPv6 address and port fit).
const ADDRESS_BYTES: usize = 64;
/// Entries of one node's row.
pub(crate) const ROW: usize = HEADER + ADDRESS_BYTES;
/// How long [`Nodes::gone`] tries to reach each node.
const PROBE: Duration = Duration::from_secs(2);
/// How long a node waits for the coordinator to open its port.
const COORDINATOR_WAIT: Duration = Duration::from_secs(60);

impl Nodes {
    /// `config` joined to the other nodes through the coordinator.
    pub(crate) fn collective(&self, config: CollectiveConfig) -> CollectiveConfig {
        let ws = |address: SocketAddr| {
            format!("ws://{address}")
                .parse()
                .expect("an address parses")
        };
        config
            .with_num_nodes(self.count as u32)
            .with_global_address(ws(self.coordinator))
            .with_node_address(ws(self.address))
            .with_data_service_port(self.address.port())
    }

    /// This node's roll call: a `[count × ROW]` table, zero but for this node's row, so that
    /// the all-reduce's sum is every node's row.
    pub(crate) fn roll_call(&self, call: RollCall) -> Vec<f32> {
        let mut table = vec![0.0; self.count * ROW];
        let row = &mut table[self.rank * ROW..(self.rank + 1) * ROW];
        row[0] = 1.0;
        row[1] = call.step as f32;
        row[2] = call.pairs as f32;
        row[3] = call.ranks as f32;
        for (piece, entry) in row[4..HEADER].iter_mut().enumerate() {
            *entry = ((call.fingerprint >> (16 * piece)) & 0xFFFF) as f32;
        }
        let address = self.address.to_string();
        for (byte, entry) in address.bytes().zip(&mut row[HEADER..]) {
            *entry = f32::from(byte);
        }
        table
    }

    /// Every node's address from the summed roll call `table`, once every node has answered
    /// once and all start the same run as `call` (this node's); otherwise which node differs
    /// and how.
    pub(crate) fn check_roll_call(
        &self,
        call: RollCall,
        table: &[f32],
    ) -> Result<Vec<SocketAddr>, String> {
        let mut addresses = Vec::with_capacity(self.count);
        for (node, row) in table.chunks_exact(ROW).enumerate() {
            if row[0] != 1.0 {
                return Err(format!(
                    "{} nodes answered as node {node}; give each node its own --node-rank in 0..{}",
                    row[0], self.count
                ));
            }
            let differs = |what: &str, theirs: f32, ours: usize, fix: &str| {
                format!(
                    "node {node} has {theirs} {what} and node {} has {ours}; {fix}",
                    self.rank
                )
            };
            let same_run = "give every node the same model, data and flags";
            if row[1] as usize != call.step {
                let fix = "resume every node from the same run folder";
                return Err(differs("steps done", row[1], call.step, fix));
            }
            if row[2] as usize != call.pairs {
                return Err(differs("training pairs", row[2], call.pairs, same_run));
            }
            if row[3] as usize != call.ranks {
                let fix = "give every node the same --data-parallel";
                return Err(differs("data-parallel ranks", row[3], call.ranks, fix));
            }
            let fingerprint = row[4..HEADER]
                .iter()
                .enumerate()
                .fold(0u64, |sum, (piece, &v)| sum | ((v as u64) << (16 * piece)));
            if fingerprint != call.fingerprint {
                return Err(format!(
                    "node {node}'s training pairs differ from node {}'s (same number, other \
                     tokens); {same_run}",
                    self.rank
                ));
            }
            let bytes: Vec<u8> = row[HEADER..]
                .iter()
                .take_while(|&&v| v != 0.0)
                .map(|&v| v as u8)
                .collect();
            let address = String::from_utf8(bytes)
                .ok()
                .and_then(|text| text.parse().ok())
                .ok_or_else(|| format!("node {node} sent an address that does not parse"))?;
            addresses.push(address);
        }
        Ok(addresses)
    }

    /// Waits until the coordinator accepts connections, at most `timeout` or
    /// [`COORDINATOR_WAIT`] if shorter (nodes and coordinator are often started together);
    /// burn-collective would otherwise retry in silence until the peer timeout.
    pub(crate) fn reach_coordinator(&self, timeout: Duration) -> Result<(), String> {
        let wait = timeout.min(COORDINATOR_WAIT);
        let deadline = Instant::now() + wait;
        loop {
            match TcpStream::connect_timeout(&self.coordinator, PROBE) {
                Ok(_) => return Ok(()),
                Err(e) if Instant::now() >= deadline => {
                    return Err(format!(
                        "the coordinator {} does not answer ({e}) after {wait:?}; \
                         start `cargo xtask coordinator --port {}` there first",
                        self.coordinator,
                        self.coordinator.port()
                    ))
                }
                Err(_) => std::thread::sleep(Duration::from_millis(250)),
            }
        }
    }

    /// The nodes among `addresses` (indexed by node rank) that no longer answer at their
    /// address, each as `node R (ADDRESS): WHY`; this node is not tried.
    pub(crate) fn gone(&self, addresses: &[SocketAddr]) -> Vec<String> {
        addresses
            .iter()
            .enumerate()
            .filter(|(node, _)| *node != self.rank)
            .filter_map(|(node, address)| {
                let why = TcpStream::connect_timeout(address, PROBE).err()?;
                Some(format!("node {node} ({address}): {why}"))
            })
            .collect()
    }
}

/// A 64-bit FNV-1a hash of `pairs`' token ids and lengths, in order: equal on two nodes when
/// they prepared the same training pairs.
pub(crate) fn fingerprint(pairs: &[TokenizedPair]) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    let mut mix = |value: u64| {
        for byte in value.to_le_bytes() {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    };
    for pair in pairs {
        for part in [&pair.prompt, &pair.chosen, &pair.rejected] {
            mix(part.len() as u64);
            part.iter().for_each(|&id| mix(u64::from(id)));
        }
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(rank: usize) -> Nodes {
        Nodes {
            count: 2,
            rank,
            coordinator: "127.0.0.1:29500".parse().unwrap(),
            address: format!("127.0.0.1:{}", 29501 + rank).parse().unwrap(),
        }
    }

    const CALL: RollCall = RollCall {
        step: 3,
        pairs: 48,
        ranks: 2,
        fingerprint: 0x1234_5678_9abc_def0,
    };

    fn summed(a: &[f32], b: &[f32]) -> Vec<f32> {
        a.iter().zip(b).map(|(x, y)| x + y).collect()
    }

    #[test]
    fn a_roll_call_of_the_same_run_gives_every_address() {
        let table = summed(&node(0).roll_call(CALL), &node(1).roll_call(CALL));
        let addresses = node(1).check_roll_call(CALL, &table).unwrap();
        assert_eq!(addresses, vec![node(0).address, node(1).address]);
    }

    #[test]
    fn a_roll_call_names_the_node_that_differs_and_how() {
        let behind = RollCall { step: 1, ..CALL };
        let table = summed(&node(0).roll_call(CALL), &node(1).roll_call(behind));
        let error = node(0).check_roll_call(CALL, &table).unwrap_err();
        assert!(error.contains("node 1 has 1 steps done"), "{error}");
        let other_data = RollCall {
            fingerprint: CALL.fingerprint ^ (1 << 40),
            ..CALL
        };
        let table = summed(&node(0).roll_call(CALL), &node(1).roll_call(other_data));
        let error = node(0).check_roll_call(CALL, &table).unwrap_err();
        assert!(error.contains("node 1's training pairs differ"), "{error}");
        let table = summed(&node(0).roll_call(CALL), &node(0).roll_call(CALL));
        let error = node(0).check_roll_call(CALL, &table).unwrap_err();
        assert!(error.contains("2 nodes answered as node 0"), "{error}");
    }

    #[test]
    fn the_fingerprint_sees_a_moved_token() {
        let pair = |prompt: Vec<u32>| TokenizedPair {
            prompt,
            chosen: vec![3],
            rejected: vec![4],
        };
        let a = fingerprint(&[pair(vec![1, 2])]);
        assert_eq!(a, fingerprint(&[pair(vec![1, 2])]));
        assert_ne!(a, fingerprint(&[pair(vec![2, 1])]));
        assert_ne!(a, fingerprint(&[pair(vec![1]), pair(vec![2])]));
    }

    #[test]
    fn a_closed_port_is_gone_and_an_open_one_is_not() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let open = listener.local_addr().unwrap();
        let closed = {
            let spare = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            spare.local_addr().unwrap()
        };
        let me = Nodes {
            count: 3,
            ..node(0)
        };
        let gone = me.gone(&[me.address, open, closed]);
        assert_eq!(gone.len(), 1, "{gone:?}");
        assert!(
            gone[0].starts_with(&format!("node 2 ({closed})")),
            "{gone:?}"
        );
    }
}
