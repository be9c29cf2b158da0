//! A quick chaos profile, so `--chaos` cannot rot: 20 calls for 24 s while the load test's
//! PostgreSQL is stopped for 6 s and the gateway is SIGKILLed and restarted after it. The
//! audit must find every placed call with a row, none open, no counter off, spooled writes
//! replayed and none lost.

use std::process::Command;

#[test]
fn twenty_calls_through_a_database_outage_and_a_killed_gateway() {
    let dir = std::env::temp_dir().join(format!("loadtest-chaos-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let json = dir.join("report.json");
    let output = Command::new(env!("CARGO_BIN_EXE_loadtest"))
        .args(["--calls", "20", "--ramp-up", "2", "--hold", "6"])
        .args(["--duration", "24"])
        .args(["--chaos", "db-outage=6@4", "--chaos", "kill-gateway@15"])
        .arg("--json")
        .arg(&json)
        .output()
        .expect("loadtest runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "loadtest --chaos failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("calls without a row"), "{stdout}");

    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let chaos = &report["chaos"];
    assert_eq!(chaos["faults"].as_array().map(Vec::len), Some(2), "{chaos}");
    assert!(chaos["calls_placed"].as_u64().unwrap() >= 20, "{chaos}");
    assert_eq!(chaos["calls_without_row"], 0, "{chaos}");
    assert_eq!(chaos["rows_open"], 0, "{chaos}");
    assert_eq!(chaos["counter_difference"], 0, "{chaos}");
    assert!(
        chaos["writes_spooled"].as_u64().unwrap() > 0,
        "the outage was felt: {chaos}"
    );
    // The killed process's counters are read just before the kill, so a write spooled in
    // that instant is replayed after the restart without having been counted as spooled.
    assert!(
        chaos["writes_replayed"].as_u64() >= chaos["writes_spooled"].as_u64(),
        "every spooled write replayed: {chaos}"
    );
    assert_eq!(chaos["spool_files_left"], 0, "{chaos}");
    assert_eq!(chaos["writes_lost"], 0, "{chaos}");
    assert!(
        chaos["events_lost"].is_null(),
        "a kill makes the event count inexact, and the report says so: {chaos}"
    );
    std::fs::remove_dir_all(&dir).ok();
}
