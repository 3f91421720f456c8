//! Peak resident memory of this process, for the benchmarks: Linux's `VmHWM`, which
//! `/proc/self/clear_refs` resets so each measurement starts from what is resident now.
//! Elsewhere it is unknown (`None`).

/// Restarts the peak from the current resident size.
pub fn reset_peak() {
    // Writing 5 resets the peak resident set size (Linux ≥ 4.0); where it fails, the peak
    // stays the process's lifetime peak.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// The peak resident size since the last [`reset_peak`] (or process start), in MiB.
pub fn peak_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// The resident size now (`VmRSS`), in MiB.
pub fn current_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}
