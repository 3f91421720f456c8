//! `cargo xtask train … --nodes 2` on loopback: a coordinator and two node processes of two
//! ranks each (one placed by flags, one by torchrun's variables) give the weights of one
//! process of four ranks and of one rank; a node killed mid-run ends the other with an error
//! naming it; the run then resumes on both nodes.

mod common;

use common::trainer_runs::{
    difference, trainer, trainer_command, trainer_command_with, ROUNDS_WEIGHT_TOLERANCE, TOLERANCE,
};
use common::{ok, scratch};

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

/// A port free on loopback now, below the range the kernel deals out to outgoing connections
/// (32768 and up on Linux): the nodes open thousands of those, and one could take a port
/// between this test finding it and a node opening it.
fn free_port() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let start = 20_000 + (std::process::id() % 1_000) as u16 * 10;
    loop {
        let port = start + NEXT.fetch_add(1, Ordering::SeqCst) % 2_000;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// `cargo xtask coordinator` on a free port, stopped when dropped.
struct Coordinator {
    port: u16,
    process: Child,
}

impl Coordinator {
    fn start() -> Self {
        let port = free_port();
        let process = Command::new(env!("CARGO_BIN_EXE_xtask"))
            .args(["coordinator", "--port", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Self { port, process }
    }
}

impl Drop for Coordinator {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// How a node is told its place: by flags, or by torchrun's environment variables.
#[derive(Clone, Copy)]
enum Told {
    Flags,
    Torchrun,
}

/// Starts `command` (a fresh trainer run or a `--resume`) as node `rank` of 2 with 2 ranks,
/// joined through `coordinator` and reached at `port`, its output piped.
fn node(
    mut command: Command,
    rank: usize,
    coordinator: &Coordinator,
    port: u16,
    told: Told,
) -> Child {
    let coordinator = format!("127.0.0.1:{}", coordinator.port);
    match told {
        Told::Flags => command
            .args(["--nodes", "2", "--node-rank", &rank.to_string()])
            .args(["--coordinator", &coordinator]),
        Told::Torchrun => command
            .env("WORLD_SIZE", "2")
            .env("RANK", rank.to_string())
            .env("MASTER_ADDR", "127.0.0.1")
            .env("MASTER_PORT", coordinator.rsplit(':').next().unwrap()),
    };
    command
        .args(["--data-parallel", "2", "--peer-timeout", "20"])
        .args(["--node-address", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits for a node to end.
fn finish(node: Child) -> Output {
    node.wait_with_output().unwrap()
}

/// Runs `command(rank)` as nodes 0 and 1 of a fresh coordinator, placed as `told` says, to
/// their end.
fn both_nodes(command: impl Fn(usize) -> Command, told: [Told; 2]) -> [Output; 2] {
    let coordinator = Coordinator::start();
    let ports = [free_port(), free_port()];
    let nodes = [0, 1].map(|rank| node(command(rank), rank, &coordinator, ports[rank], told[rank]));
    nodes.map(finish)
}

/// `xtask train --quiet --resume run`.
fn resume(run: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_xtask"));
    command.args(["train", "--quiet", "--resume"]).arg(run);
    command
}

#[test]
fn two_nodes_of_two_ranks_give_the_weights_of_four_ranks_and_of_one() {
    let dir = scratch("nodes");
    let run = dir.join("2x2");
    // Node 0 is told its place by flags, node 1 by torchrun's variables.
    let told = [Told::Flags, Told::Torchrun];
    let [zero, one] = both_nodes(|_| trainer_command(&run, &[]), told);
    ok(&zero);
    ok(&one);
    let stdout = String::from_utf8_lossy(&one.stdout);
    assert!(stdout.contains("node 1: 6 steps"), "{stdout}");
    let (single, four) = (dir.join("1"), dir.join("4"));
    ok(&trainer(&single, &[]));
    ok(&trainer(&four, &["--data-parallel", "4"]));
    for other in [&single, &four] {
        let (metric, weight) = difference(other, &run);
        println!(
            "2 nodes × 2 ranks against {}: metrics within {metric:.1e}, weights within {weight:.1e}",
            other.display()
        );
        assert!(metric < TOLERANCE && weight < TOLERANCE);
    }
}

#[test]
fn a_killed_node_ends_the_other_with_an_error_naming_it_and_the_run_resumes() {
    let dir = scratch("killed");
    let whole = dir.join("whole");
    ok(&trainer(&whole, &[]));
    let run = dir.join("run");
    let coordinator = Coordinator::start();
    let ports = [free_port(), free_port()];
    let save = ["--save-steps", "2"];
    let zero = node(
        trainer_command(&run, &save),
        0,
        &coordinator,
        ports[0],
        Told::Flags,
    );
    let fault = ["--save-steps", "2", "--fault", "peer-hangs:0@3"];
    let mut one = node(
        trainer_command(&run, &fault),
        1,
        &coordinator,
        ports[1],
        Told::Flags,
    );
    let mut said = String::new();
    for line in BufReader::new(one.stderr.take().unwrap()).lines() {
        let line = line.unwrap();
        said.push_str(&line);
        said.push('\n');
        if line.contains("fault: peer 0 hangs at step 3") {
            break;
        }
    }
    assert!(
        said.contains("hangs at step 3"),
        "node 1 ended before step 3:\n{said}"
    );
    one.kill().unwrap();
    one.wait().unwrap();
    let killed = Instant::now();
    let zero = finish(zero);
    let waited = killed.elapsed();
    let stderr = String::from_utf8_lossy(&zero.stderr);
    assert!(!zero.status.success());
    assert!(
        stderr.contains(&format!("gone: node 1 (127.0.0.1:{})", ports[1])),
        "{stderr}"
    );
    println!("node 0 ended {waited:?} after node 1 was killed");
    assert!(waited < Duration::from_secs(20 + 10), "{waited:?}");
    let [zero, one] = both_nodes(|_| resume(&run), [Told::Flags; 2]);
    ok(&zero);
    ok(&one);
    let (metric, weight) = difference(&whole, &run);
    println!("resumed on 2 nodes: metrics within {metric:.1e}, weights within {weight:.1e}");
    assert!(metric < TOLERANCE && weight < TOLERANCE);
}

#[test]
fn a_node_without_its_coordinator_says_so() {
    let dir = scratch("alone");
    let absent = free_port();
    let output = trainer(
        &dir.join("run"),
        &[
            "--nodes",
            "2",
            "--node-rank",
            "1",
            "--coordinator",
            &format!("127.0.0.1:{absent}"),
            "--peer-timeout",
            "2",
        ],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains(&format!(
            "node 1: the coordinator 127.0.0.1:{absent} does not answer"
        )),
        "{stderr}"
    );
    assert!(!dir.join("run").exists(), "node 1 wrote the run folder");
}

#[test]
fn every_node_stops_on_a_non_finite_loss() {
    let dir = scratch("diverges");
    let run = dir.join("run");
    // One step at lr 1e10 leaves weights whose forward overflows at step 2.
    let command = |_| trainer_command_with(&run, ("1e10", "3"), &[]);
    for (rank, output) in both_nodes(command, [Told::Flags; 2]).iter().enumerate() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "node {rank} did not stop");
        assert!(
            stderr.contains("step 2") && stderr.contains("not finite"),
            "node {rank}: {stderr}"
        );
    }
    assert!(
        !run.join("model").exists(),
        "node 0 exported a diverged model"
    );
}

/// The `index` of every line of a run's `suspect_labels.jsonl`.
fn suspects(run: &Path) -> Vec<u64> {
    let text = std::fs::read_to_string(run.join("suspect_labels.jsonl")).unwrap();
    text.lines()
        .map(|line| {
            let record: serde_json::Value = serde_json::from_str(line).unwrap();
            record["index"].as_u64().unwrap()
        })
        .collect()
}

#[test]
fn filter_rounds_over_two_nodes_drop_the_pairs_one_rank_drops() {
    let dir = scratch("rounds");
    let rounds = ["--filter-rounds", "1"];
    let single = dir.join("1");
    ok(&trainer(&single, &rounds));
    let run = dir.join("2x2");
    let [zero, one] = both_nodes(|_| trainer_command(&run, &rounds), [Told::Flags; 2]);
    ok(&zero);
    ok(&one);
    let dropped = suspects(&single);
    assert!(!dropped.is_empty());
    assert_eq!(suspects(&run), dropped);
    let (metric, weight) = difference(&single, &run);
    println!(
        "2 rounds on 2 nodes × 2 ranks: metrics within {metric:.1e}, weights within {weight:.1e}"
    );
    assert!(metric < TOLERANCE && weight < ROUNDS_WEIGHT_TOLERANCE);
}
