//! The benchmark harness end to end, in smoke mode, against the real gateway binary: it must
//! finish, write a well-formed report that covers every scenario, and leave no process behind.
//! Speed is never asserted.
#![cfg(target_os = "linux")]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use serde_json::Value;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("bench/ has a parent")
        .to_path_buf()
}

fn newest(path: &Path) -> Option<SystemTime> {
    let meta = path.metadata().ok()?;
    if meta.is_file() {
        return meta.modified().ok();
    }
    std::fs::read_dir(path)
        .ok()?
        .flatten()
        .filter_map(|e| newest(&e.path()))
        .max()
}

/// `target/debug/bitrouter`, built first when it is missing or older than the host's sources
/// (only sources: tests leave ledgers and caches beside them, which must not force a rebuild
/// with this crate's feature set while `cargo test --workspace` just built it with its own).
fn gateway_binary() -> Option<PathBuf> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target"));
    let binary = target.join("debug").join("bitrouter");
    let built = binary.metadata().and_then(|m| m.modified()).ok();
    let host = workspace().join("host");
    let sources = [
        host.join("src"),
        host.join("Cargo.toml"),
        host.join("templates"),
    ]
    .iter()
    .filter_map(|p| newest(p))
    .max();
    let fresh = matches!((built, sources), (Some(b), Some(s)) if b >= s);
    if !fresh {
        // `cargo test` holds no build lock while tests run, so this does not deadlock.
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let status = Command::new(cargo)
            .args(["build", "-p", "bitrouter"])
            .current_dir(workspace())
            .status();
        if !status.is_ok_and(|s| s.success()) {
            eprintln!("could not build the gateway; skipping");
        }
    }
    binary.is_file().then_some(binary)
}

/// Processes whose environment carries `marker` (the harness's children inherit it).
fn processes_with(marker: &str) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|b| *b == 0).any(|kv| kv == marker.as_bytes()))
        })
        .collect()
}

#[test]
fn smoke_run_reports_every_scenario_and_cleans_up() {
    let Some(gateway) = gateway_binary() else {
        eprintln!("no gateway binary (target/debug/bitrouter); skipping the harness smoke test");
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("results");
    // A private TMPDIR marks the harness's children, so leftovers can be found.
    let tmp = dir.path().join("tmp");
    std::fs::create_dir(&tmp).expect("tmp dir");
    let marker = format!("TMPDIR={}", tmp.display());

    let output = Command::new(env!("CARGO_BIN_EXE_bench"))
        .arg("--smoke")
        .arg("--gateway")
        .arg(&gateway)
        .arg("--out")
        .arg(&out)
        .env("TMPDIR", &tmp)
        .output()
        .expect("run the harness");
    let leftovers = processes_with(&marker);
    for pid in &leftovers {
        // Don't leave them running even when the test fails.
        let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "harness failed:\n{stderr}");
    assert!(leftovers.is_empty(), "processes left behind: {leftovers:?}");

    let json = std::fs::read_to_string(out.join("report.json")).expect("report.json written");
    let report: Value = serde_json::from_str(&json).expect("report.json is JSON");
    assert_eq!(report["mode"], "smoke");
    for key in ["date_utc", "git_commit", "rustc"] {
        assert!(report[key].is_string(), "{key} missing");
    }
    assert!(report["machine"]["nproc"].as_u64().is_some_and(|n| n >= 1));
    assert!(report["machine"]["cpu_model"].is_string());
    assert!(report["setup"]["pinning"].is_string());
    let cold = report["gateway"]["cold_start_ms"]["samples"]
        .as_array()
        .expect("cold start samples");
    assert!(!cold.is_empty());
    assert!(
        report["gateway"]["rss_idle_mb"]
            .as_f64()
            .is_some_and(|v| v > 0.0)
    );

    let scenarios = report["scenarios"].as_array().expect("scenarios");
    let ids: Vec<u64> = scenarios.iter().filter_map(|s| s["id"].as_u64()).collect();
    assert_eq!(ids, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    for s in scenarios {
        let id = s["id"].as_u64().unwrap_or(0);
        assert_eq!(s["status"], "measured", "scenario {id}");
        assert!(!s["phases"].as_array().expect("phases").is_empty());
        if id == 10 {
            // Every stream cut half-way was carried on to its `[DONE]`.
            for phase in s["phases"].as_array().expect("phases") {
                assert_eq!(phase["stats"]["failed"], 0, "scenario 10 {phase}");
            }
        }
        if id == 7 {
            let held = &s["held_streams"];
            assert!(held["rss_open_mb"]["median"].is_number(), "{held}");
            assert!(held["max_open_via"]["median"].is_number(), "{held}");
        } else {
            let open = &s["open_loop"];
            for key in ["direct_us", "via_us", "added_us", "ttfb_added_us"] {
                for p in ["p50", "p90", "p99", "p999"] {
                    assert!(
                        open[key][p]["median"].is_number(),
                        "scenario {id} {key}.{p}"
                    );
                }
            }
            assert!(
                s["closed_loop"]["ratio"]["median"].is_number(),
                "scenario {id}"
            );
            assert!(
                s["gateway_cpu_s_per_1k"]["median"].is_number(),
                "scenario {id}"
            );
        }
    }
    // The floor proxy ran its scenarios, every request answered, beside the gateway's.
    let floor = report["floor"]["scenarios"]
        .as_array()
        .expect("floor scenarios");
    let ids: Vec<u64> = floor.iter().filter_map(|s| s["id"].as_u64()).collect();
    assert_eq!(ids, [1, 3, 4, 5]);
    for s in floor {
        assert_eq!(s["status"], "measured", "floor {s}");
        for phase in s["phases"].as_array().expect("floor phases") {
            assert_eq!(phase["stats"]["failed"], 0, "floor {phase}");
        }
        assert!(s["open_loop"]["added_us"]["p50"]["median"].is_number());
    }

    let goals = report["goals"].as_array().expect("goals");
    assert!(goals.len() >= 8);
    for g in goals {
        let verdict = g["verdict"].as_str().expect("verdict");
        assert!(
            verdict == "not judged (smoke run)" || verdict.contains("not by this harness"),
            "smoke runs judge no goal: {g}"
        );
    }

    let md = std::fs::read_to_string(out.join("report.md")).expect("report.md written");
    assert!(md.starts_with("# BitRouter benchmark report"));
    assert!(md.contains("## Goals (DESIGN.md)"));
    assert!(md.contains("### 3. "), "{md}");
    assert!(md.contains("## Floor: a bare hyper reverse proxy"), "{md}");
    assert!(md.contains("the floor's"), "{md}");
}
