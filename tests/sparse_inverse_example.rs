//! The sparse_inverse example as a user runs it: tiny sizes, the files it
//! writes, the keys of report.json, reading data back with --data-dir, and
//! a clean error for invalid flags.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// Returns the example binary that `cargo test` builds next to the test binaries.
fn example_binary() -> PathBuf {
    let deps = std::env::current_exe().unwrap().parent().unwrap().to_path_buf();
    let binary = deps
        .parent()
        .unwrap()
        .join("examples")
        .join(format!("sparse_inverse{}", std::env::consts::EXE_SUFFIX));
    assert!(
        binary.exists(),
        "example binary not found at {}; build it with cargo test or cargo build --examples",
        binary.display()
    );
    binary
}

fn run(args: &[&str]) -> Output {
    Command::new(example_binary()).args(args).output().unwrap()
}

fn assert_success(output: &Output) {
    assert!(
        output.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn out_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("optlayer-example-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn read_report(dir: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join("report.json")).unwrap()).unwrap()
}

const TINY: &[&str] = &[
    "--n",
    "30",
    "--m",
    "15",
    "--r",
    "6",
    "--train-samples",
    "200",
    "--test-samples",
    "50",
    "--batch-size",
    "50",
    "--train-iters",
    "60",
    "--test-iters",
    "120",
    "--threads",
    "2",
    "--lr",
    "3e-3",
];

#[test]
fn example_writes_report_and_files() {
    let dir = out_dir("run");
    let mut args = TINY.to_vec();
    let dir_arg = dir.to_str().unwrap().to_string();
    args.extend([
        "--out",
        &dir_arg,
        "--quiet",
        "--precision",
        "f64",
        "--epochs",
        "2",
    ]);
    let output = run(&args);
    assert!(
        output.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("least squares"), "{stdout}");
    assert!(stdout.contains("trained Θ"), "{stdout}");

    for file in [
        "A.npy",
        "M.npy",
        "theta_init.npy",
        "theta_trained.npy",
        "train_d.npy",
        "train_x.npy",
        "test_d.npy",
        "test_x.npy",
        "report.json",
    ] {
        assert!(dir.join(file).exists(), "missing {file}");
    }
    let report = read_report(&dir);
    assert_eq!(report["config"]["n"], 30);
    assert_eq!(report["config"]["epochs"], 2);
    assert_eq!(report["epochs"].as_array().unwrap().len(), 2);
    for key in ["epoch", "train_mse", "test_mse", "seconds"] {
        assert!(report["epochs"][0][key].is_number(), "epochs[0].{key}");
    }
    for path in [
        ["least_squares", "mse"],
        ["least_squares", "fidelity"],
        ["untrained", "mse_train_depth"],
        ["untrained", "mse_test_depth"],
        ["trained", "mse_train_depth"],
        ["trained", "mse_test_depth"],
        ["trained", "fidelity"],
    ] {
        let value = &report["test"][path[0]][path[1]];
        assert!(
            value.as_f64().is_some_and(f64::is_finite),
            "test.{}.{} = {value}",
            path[0],
            path[1]
        );
    }
    assert!(report["wall_seconds"].as_f64().unwrap() > 0.0);

    let theta =
        optlayer::train::npy::read_matrix_with_shape::<f64>(&dir.join("theta_trained.npy"), 30, 30).unwrap();
    let sigma = theta.as_ref().singular_values().unwrap()[0];
    assert!(
        (sigma - 1.0).abs() < 1e-3,
        "trained Θ should have unit spectral norm, found {sigma}"
    );
}

#[test]
fn example_reads_data_dir() {
    let first = out_dir("source");
    let first_arg = first.to_str().unwrap().to_string();
    let mut args = TINY.to_vec();
    args.extend([
        "--out",
        &first_arg,
        "--quiet",
        "--precision",
        "f64",
        "--epochs",
        "1",
    ]);
    assert_success(&run(&args));

    let second = out_dir("reread");
    let second_arg = second.to_str().unwrap().to_string();
    let output = run(&[
        "--data-dir",
        &first_arg,
        "--theta-init",
        &format!("{first_arg}/theta_init.npy"),
        "--out",
        &second_arg,
        "--quiet",
        "--precision",
        "f64",
        "--epochs",
        "1",
        "--batch-size",
        "50",
        "--train-iters",
        "60",
        "--test-iters",
        "120",
        "--lr",
        "3e-3",
    ]);
    assert!(
        output.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let (a, b) = (read_report(&first), read_report(&second));
    assert_eq!(b["config"]["n"], 30);
    assert_eq!(b["config"]["m"], 15);
    assert_eq!(b["config"]["train_samples"], 200);
    assert_eq!(
        b["test"]["least_squares"]["mse"],
        a["test"]["least_squares"]["mse"]
    );
    // Θ₀ is read back and normalized again, which can change it by rounding.
    let (untrained_a, untrained_b) = (
        a["test"]["untrained"]["mse_test_depth"].as_f64().unwrap(),
        b["test"]["untrained"]["mse_test_depth"].as_f64().unwrap(),
    );
    assert!(
        (untrained_a - untrained_b).abs() <= 1e-6 * untrained_a,
        "{untrained_a} vs {untrained_b}"
    );
}

#[test]
fn example_rejects_invalid_sizes() {
    let dir = out_dir("invalid");
    let output = run(&[
        "--n",
        "10",
        "--m",
        "20",
        "--out",
        dir.to_str().unwrap(),
        "--quiet",
    ]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("invalid m = 20"), "{stderr}");
    assert!(stderr.contains("n = 10"), "{stderr}");
    assert!(stderr.contains("underdetermined"), "{stderr}");
}

#[test]
fn example_reports_missing_data_dir() {
    let dir = out_dir("missing");
    let output = run(&[
        "--data-dir",
        "/nonexistent/optlayer-data",
        "--out",
        dir.to_str().unwrap(),
        "--quiet",
    ]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("/nonexistent/optlayer-data/A.npy"), "{stderr}");
}
