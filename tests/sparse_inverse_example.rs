//! The sparse_inverse example as a user runs it: tiny sizes, the files it
//! writes, the keys of report.json, reading data back with --data-dir, and
//! a clean error for invalid flags.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use optlayer_testing::temp::TempDir;
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
    let dir = TempDir::new("run");
    let mut args = TINY.to_vec();
    let dir_arg = dir.path().to_str().unwrap().to_string();
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
    let report = read_report(dir.path());
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
    let first = TempDir::new("source");
    let first_arg = first.path().to_str().unwrap().to_string();
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

    let second = TempDir::new("reread");
    let second_arg = second.path().to_str().unwrap().to_string();
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
    let (a, b) = (read_report(first.path()), read_report(second.path()));
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
    let dir = TempDir::new("invalid");
    let output = run(&[
        "--n",
        "10",
        "--m",
        "20",
        "--out",
        dir.path().to_str().unwrap(),
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
    let dir = TempDir::new("missing");
    let output = run(&[
        "--data-dir",
        "/nonexistent/optlayer-data",
        "--out",
        dir.path().to_str().unwrap(),
        "--quiet",
    ]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("/nonexistent/optlayer-data/A.npy"), "{stderr}");
}

#[test]
fn failed_run_keeps_earlier_results() {
    let dir = TempDir::new("keep");
    let dir_arg = dir.path().to_str().unwrap().to_string();
    let mut args = TINY.to_vec();
    args.extend(["--out", &dir_arg, "--quiet", "--epochs", "1"]);
    assert_success(&run(&args));
    let report_before = std::fs::read(dir.join("report.json")).unwrap();
    let a_before = std::fs::read(dir.join("A.npy")).unwrap();

    // A run that fails after it started writing: the data folder lacks its files.
    let missing = TempDir::new("keep-missing-data");
    let output = run(&[
        "--data-dir",
        missing.path().to_str().unwrap(),
        "--out",
        &dir_arg,
        "--quiet",
    ]);
    assert!(!output.status.success());

    assert_eq!(std::fs::read(dir.join("report.json")).unwrap(), report_before);
    assert_eq!(std::fs::read(dir.join("A.npy")).unwrap(), a_before);
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with(".partial"))
        .collect();
    assert!(leftovers.is_empty(), "staging folders left behind: {leftovers:?}");
}

#[test]
fn size_flags_conflict_with_data_dir() {
    let output = run(&["--data-dir", "/nonexistent", "--n", "30", "--quiet"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--n = 30"), "{stderr}");
    assert!(stderr.contains("--data-dir"), "{stderr}");
}

#[test]
fn invalid_flags_name_the_flag() {
    for (args, expected) in [
        (&["--train-iters", "0"][..], "--train-iters = 0"),
        (&["--lr", "-1"][..], "--lr = -1"),
        (&["--tol", "nan"][..], "--tol = NaN"),
        (&["--batch-size", "0"][..], "--batch-size = 0"),
    ] {
        let output = run(&[args, &["--quiet", "--out", "/nonexistent/never-created"]].concat());
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
    assert!(!Path::new("/nonexistent/never-created").exists());
}

#[test]
fn example_audits_and_trains_with_other_modes() {
    let dir = TempDir::new("audit");
    let dir_arg = dir.path().to_str().unwrap().to_string();
    let mut args = TINY.to_vec();
    args.extend([
        "--out",
        &dir_arg,
        "--quiet",
        "--precision",
        "f64",
        "--epochs",
        "1",
        "--audit",
        "--grad",
        "truncated:3",
    ]);
    args.extend(["--contraction-iters", "4"]);
    let output = run(&args);
    assert_success(&output);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("gradient audit against"), "{stdout}");
    let report = read_report(dir.path());
    assert_eq!(report["config"]["grad"], "truncated:3");
    let audit = report["audit"].as_array().unwrap();
    assert_eq!(audit.len(), 4);
    assert!(audit[0]["mode"].as_str().unwrap().starts_with("jfb"));
    assert!(report["epochs"][0]["contraction_max"].as_f64().is_some());
}

#[test]
fn example_unrolled_memory_limit() {
    let dir = TempDir::new("unrolled-limit");
    let dir_arg = dir.path().to_str().unwrap().to_string();
    let mut args = TINY.to_vec();
    args.extend([
        "--out",
        &dir_arg,
        "--quiet",
        "--epochs",
        "1",
        "--grad",
        "unrolled",
        "--memory-limit-mib",
        "1",
    ]);
    let output = run(&args);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("unrolled backpropagation through 60 iterations"),
        "{stderr}"
    );
    assert!(stderr.contains("1048576 bytes"), "{stderr}");
    assert!(!dir.join("report.json").exists());
}

#[test]
fn example_rejects_unknown_gradient_mode() {
    let output = run(&[
        "--grad",
        "backprop",
        "--quiet",
        "--out",
        "/nonexistent/never-created",
    ]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("invalid gradient mode 'backprop'"), "{stderr}");
    assert!(stderr.contains("truncated:K"), "{stderr}");
}

#[test]
fn example_fallback_completes_and_needs_estimates() {
    let dir = TempDir::new("fallback");
    let dir_arg = dir.path().to_str().unwrap().to_string();
    let mut args = TINY.to_vec();
    args.extend([
        "--out",
        &dir_arg,
        "--quiet",
        "--epochs",
        "1",
        "--contraction-iters",
        "6",
        "--fallback-implicit",
    ]);
    assert_success(&run(&args));
    let report = read_report(dir.path());
    let epoch = &report["epochs"][0];
    let fallbacks = epoch["fallbacks"].as_u64().unwrap();
    let failures = epoch["fallback_failures"].as_u64().unwrap();
    assert!(failures <= fallbacks, "{epoch}");
    assert!(epoch["contraction_mean"].as_f64().is_some(), "{epoch}");

    let output = run(&[
        "--fallback-implicit",
        "--quiet",
        "--out",
        "/nonexistent/never-created",
    ]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--contraction-iters"), "{stderr}");
}
