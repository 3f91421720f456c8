//! The coordinator of a multi-node run: burn-collective's global orchestrator, which tells the
//! nodes of each all-reduce where their peers are. It carries no tensors (those go node to
//! node) and keeps no run state worth saving.

use std::net::{Ipv4Addr, TcpListener};

use crate::TrainError;

/// Serves the nodes of one run on `port` (every interface) until the process is stopped.
/// Fails at once, naming the port, when the port cannot be opened; the orchestrator would
/// otherwise only log it.
pub fn serve_coordinator(port: u16) -> Result<(), TrainError> {
    let refused = |e: std::io::Error| TrainError::Config(format!("coordinator port {port}: {e}"));
    drop(TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)).map_err(refused)?);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            TrainError::Config(format!("coordinator: could not start its runtime: {e}"))
        })?;
    runtime.block_on(burn_collective::start_global_orchestrator(port));
    Ok(())
}
