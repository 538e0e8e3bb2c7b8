//! deploy/: the systemd units pass `systemd-analyze verify` (and its
//! offline security review), and the sample herald.toml, with the secrets
//! of herald.env.example, is a valid configuration.
use std::path::{Path, PathBuf};
use std::process::Command;

use herald_tests::process::{HeraldEnv, herald_bin};

fn deploy() -> PathBuf {
    herald_tests::workspace_root().join("deploy")
}

const UNITS: [&str; 2] = ["herald-relay.service", "herald-worker.service"];

#[test]
fn units_are_hardened_and_restart_on_failure() {
    for unit in UNITS {
        let text = std::fs::read_to_string(deploy().join(unit)).unwrap();
        for line in [
            "Restart=on-failure",
            "RestartPreventExitStatus=2",
            "EnvironmentFile=/etc/herald/herald.env",
            "NoNewPrivileges=yes",
            "ProtectSystem=strict",
            "PrivateTmp=yes",
            "DynamicUser=yes",
            "--config /etc/herald/herald.toml",
        ] {
            assert!(text.contains(line), "{unit} lacks {line}");
        }
    }
}

/// The units with ExecStart pointing at the binary under test: verify
/// checks that the executable exists.
fn units_for_test(dir: &Path) -> Vec<PathBuf> {
    UNITS
        .iter()
        .map(|unit| {
            let text = std::fs::read_to_string(deploy().join(unit))
                .unwrap()
                .replace("/usr/local/bin/herald", &herald_bin().display().to_string());
            let path = dir.join(unit);
            std::fs::write(&path, text).unwrap();
            path
        })
        .collect()
}

#[test]
fn units_pass_systemd_analyze() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!(
            "systemd-analyze not found (Debian package `systemd`; scripts/setup.sh installs it): skipping the unit verification only"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let units = units_for_test(dir.path());
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .args(&units)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    // verify exits 0 on most mistakes (an unknown key, a bad value) and
    // only warns: any warning is a failure here.
    assert!(
        out.status.success() && err.trim().is_empty(),
        "systemd-analyze verify:\n{err}"
    );
    for unit in &units {
        let out = Command::new("systemd-analyze")
            .args(["security", "--offline=yes", "--threshold=20", "--no-pager"])
            .arg(unit)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}: exposure above 2.0:\n{}{}",
            unit.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// What systemd's EnvironmentFile= would set (KEY=VALUE lines, # comments).
fn env_file(path: &Path) -> Vec<(String, String)> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap();
            (k.trim().to_string(), v.trim().to_string())
        })
        .collect()
}

#[test]
fn sample_config_is_valid() {
    let dir = tempfile::tempdir().unwrap();
    let mut env = HeraldEnv {
        cwd: Some(dir.path().to_path_buf()),
        ..HeraldEnv::default()
    };
    let secrets = env_file(&deploy().join("herald.env.example"));
    for (k, v) in &secrets {
        env.set(k, v.clone());
    }
    let config = deploy().join("herald.toml").display().to_string();
    let out = env.run(&["config", "--config", &config, "--json"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "deploy/herald.toml: {err}");
    let c: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let s = &c["settings"];
    assert_eq!(s["relay"]["relay_batch"]["source"], "file");
    assert_eq!(s["workflows"]["value"], "/etc/herald/workflows");
    assert_eq!(
        s["database_url"]["source"], "env",
        "herald.env wins over the file"
    );
    assert_eq!(s["worker"]["unsubscribe_secret"]["value"], "***");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("CHANGE-ME"), "a secret printed: {text}");
    // Without herald.env the file alone is valid too, but unsubscribe links need their key.
    let out = HeraldEnv {
        cwd: Some(dir.path().to_path_buf()),
        ..HeraldEnv::default()
    }
    .run(&["config", "--config", &config]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--unsubscribe-secret"));
}
