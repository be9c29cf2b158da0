//! A quick profile of the load test (50 calls for 10 s), so the tool itself cannot rot: it
//! must start the whole system, complete every call, and report sane figures.

use std::process::Command;

#[test]
fn fifty_calls_for_ten_seconds() {
    let dir = std::env::temp_dir().join(format!("loadtest-quick-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let json = dir.join("report.json");
    let svg = dir.join("chart.svg");
    let output = Command::new(env!("CARGO_BIN_EXE_loadtest"))
        .args([
            "--calls",
            "50",
            "--ramp-up",
            "3",
            "--hold",
            "7",
            "--duration",
            "10",
            "--max-failed",
            "0",
        ])
        .arg("--json")
        .arg(&json)
        .arg("--svg")
        .arg(&svg)
        .output()
        .expect("loadtest runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "loadtest failed:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("turn (gateway share)"),
        "the final table: {stdout}"
    );

    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert!(report["calls_done"].as_u64().unwrap() >= 50, "{report}");
    assert_eq!(report["calls_failed"], 0, "{report}");
    assert_eq!(report["peak_live_calls"], 50, "{report}");
    assert!(
        report["turn"]["count"].as_u64().unwrap() > 0,
        "turns were measured"
    );
    assert!(
        report["barge_in_clear"]["count"].as_u64().unwrap() > 0,
        "barge-ins were measured"
    );
    assert!(
        report["turn"]["p50_ms"].as_f64().unwrap()
            >= report["provider_share_ms"].as_f64().unwrap() - 25.0,
        "a turn includes the provider's share"
    );
    assert_eq!(report["playback_gaps"], 0, "no playback gaps: {report}");
    assert!(report["gateway_cpu_per_call_second"].as_f64().is_some());
    assert!(report["gateway_bytes_per_live_call"].as_f64().is_some());
    let chart = std::fs::read_to_string(&svg).unwrap();
    assert!(chart.starts_with("<svg") && chart.contains("live calls over time"));
    std::fs::remove_dir_all(&dir).ok();
}
