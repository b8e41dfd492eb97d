//! The training workflow of the sparse_inverse example: checkpoints, resuming
//! after Ctrl-C and after a kill, evaluating a Θ from a file, the certificate
//! and the figures.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use faer::Mat;
use optlayer::train::npy;
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
        "example binary not found at {}",
        binary.display()
    );
    binary
}

fn run(args: &[&str]) -> Output {
    Command::new(example_binary()).args(args).output().unwrap()
}

fn spawn(args: &[&str]) -> Child {
    Command::new(example_binary())
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn stderr_of(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn assert_success(output: &Output) {
    assert!(output.status.success(), "stderr: {}", stderr_of(output));
}

fn read_report(dir: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join("report.json")).unwrap()).unwrap()
}

/// A run of several batches per epoch, on one thread so that runs are
/// bit-for-bit repeatable.
const SMALL: &[&str] = &[
    "--n",
    "30",
    "--m",
    "15",
    "--r",
    "6",
    "--train-samples",
    "1200",
    "--test-samples",
    "40",
    "--batch-size",
    "20",
    "--train-iters",
    "300",
    "--test-iters",
    "120",
    "--threads",
    "1",
    "--lr",
    "3e-3",
    "--epochs",
    "3",
    "--calibration-samples",
    "300",
];

fn args_with<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = SMALL.to_vec();
    args.extend_from_slice(extra);
    args
}

/// Waits until the run in `out` has saved a checkpoint, or fails the test
/// when the process ends first.
fn wait_for_checkpoint(child: &mut Child, out: &Path) {
    let pointer = out.join("checkpoint").join("checkpoint.txt");
    let deadline = Instant::now() + Duration::from_secs(120);
    while !pointer.exists() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the run ended ({status}) before its first checkpoint");
        }
        assert!(Instant::now() < deadline, "no checkpoint after 120 s");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The uninterrupted run that the resumed runs must reproduce.
fn reference_run(dir: &Path) -> (Mat<f64>, Value) {
    let out = dir.to_str().unwrap();
    let output = run(&args_with(&["--out", out, "--quiet"]));
    assert_success(&output);
    (read_theta(dir), read_report(dir))
}

fn read_theta(dir: &Path) -> Mat<f64> {
    npy::read_matrix::<f64>(&dir.join("theta_trained.npy")).unwrap()
}

/// Returns the number of entries in which `a` and `b` differ, and the largest difference.
fn differences(a: &Mat<f64>, b: &Mat<f64>) -> (usize, f64) {
    assert_eq!((a.nrows(), a.ncols()), (b.nrows(), b.ncols()));
    let mut count = 0;
    let mut largest = 0.0f64;
    for j in 0..a.ncols() {
        for i in 0..a.nrows() {
            if a[(i, j)].to_bits() != b[(i, j)].to_bits() {
                count += 1;
                largest = largest.max((a[(i, j)] - b[(i, j)]).abs());
            }
        }
    }
    (count, largest)
}

fn epoch_losses(report: &Value) -> Vec<f64> {
    report["epochs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["train_mse"].as_f64().unwrap())
        .collect()
}

#[test]
fn resumed_runs_end_with_the_same_theta() {
    let reference_dir = TempDir::new("workflow-reference");
    let (reference_theta, reference_report) = reference_run(reference_dir.path());
    let reference_losses = epoch_losses(&reference_report);
    assert_eq!(reference_losses.len(), 3);

    // Ctrl-C: the run saves at the next batch boundary and exits with 130.
    let interrupted_dir = TempDir::new("workflow-interrupted");
    let out = interrupted_dir.path().to_str().unwrap().to_string();
    let mut child = spawn(&args_with(&["--out", &out]));
    wait_for_checkpoint(&mut child, interrupted_dir.path());
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let output = child.wait_with_output().unwrap();
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(130), "stderr: {stderr}");
    assert!(stderr.contains("interrupted in epoch"), "{stderr}");
    assert!(stderr.contains("--resume"), "{stderr}");
    assert!(!interrupted_dir.path().join("report.json").exists());
    let resumed = run(&["--resume", &out, "--quiet"]);
    assert_success(&resumed);
    let report = read_report(interrupted_dir.path());
    assert!(report["training"]["resumed_at_epoch"].is_number());
    let (count, largest) = differences(&read_theta(interrupted_dir.path()), &reference_theta);
    assert_eq!(
        count, 0,
        "Θ after Ctrl-C and --resume differs from the uninterrupted run in {count} entries, by up to {largest:e}"
    );
    assert_eq!(epoch_losses(&report), reference_losses);

    // A kill: no chance to save, so the run resumes from the last epoch.
    let killed_dir = TempDir::new("workflow-killed");
    let out = killed_dir.path().to_str().unwrap().to_string();
    let mut child = spawn(&args_with(&["--out", &out, "--quiet"]));
    wait_for_checkpoint(&mut child, killed_dir.path());
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success(), "the run finished before the kill");
    assert!(!killed_dir.path().join("report.json").exists());
    let resumed = run(&["--resume", &out, "--quiet"]);
    assert_success(&resumed);
    let (count, largest) = differences(&read_theta(killed_dir.path()), &reference_theta);
    assert_eq!(
        count, 0,
        "Θ after a kill and --resume differs from the uninterrupted run in {count} entries, by up to {largest:e}"
    );
    assert_eq!(epoch_losses(&read_report(killed_dir.path())), reference_losses);

    // A finished run can be extended: --epochs with --resume trains more.
    let extended = run(&[
        "--resume",
        reference_dir.path().to_str().unwrap(),
        "--epochs",
        "4",
        "--quiet",
    ]);
    assert_success(&extended);
    let report = read_report(reference_dir.path());
    let losses = epoch_losses(&report);
    assert_eq!(losses.len(), 4);
    assert_eq!(&losses[..3], &reference_losses[..]);
    assert_eq!(report["training"]["resumed_at_epoch"], 3);
}

#[test]
fn resume_rejects_other_flags_and_missing_folders() {
    let dir = TempDir::new("workflow-resume-flags");
    let out = dir.path().to_str().unwrap();
    let output = run(&["--resume", out, "--lr", "1e-2"]);
    assert!(!output.status.success());
    let stderr = stderr_of(&output);
    assert!(stderr.contains("--lr"), "{stderr}");
    assert!(stderr.contains("--resume"), "{stderr}");

    let output = run(&["--resume", "/nonexistent/optlayer-run"]);
    assert!(!output.status.success());
    let stderr = stderr_of(&output);
    assert!(stderr.contains("/nonexistent/optlayer-run"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// Writes a .npy file with dtype `descr` (8-byte floats or 4-byte integers) of shape `rows x cols` holding `value(i, j)`.
fn write_npy(
    path: &Path,
    descr: &str,
    rows: usize,
    cols: usize,
    bytes_per: usize,
    value: impl Fn(usize, usize) -> f64,
) {
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': ({rows}, {cols}), }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    for i in 0..rows {
        for j in 0..cols {
            let v = value(i, j);
            match bytes_per {
                8 => bytes.extend_from_slice(&v.to_le_bytes()),
                4 => bytes.extend_from_slice(&(v as i32).to_le_bytes()),
                _ => unreachable!(),
            }
        }
    }
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn load_theta_checks_shape_and_dtype() {
    let dir = TempDir::new("workflow-load-theta");
    let wrong = dir.path().join("wrong.npy");
    write_npy(&wrong, "<f8", 30, 29, 8, |i, j| if i == j { 1.0 } else { 0.0 });
    let out = dir.path().join("out");
    let out = out.to_str().unwrap();
    let output = run(&args_with(&[
        "--out",
        out,
        "--load-theta",
        wrong.to_str().unwrap(),
    ]));
    assert!(!output.status.success());
    let stderr = stderr_of(&output);
    assert!(stderr.contains("30 x 30"), "{stderr}");
    assert!(stderr.contains("30 x 29"), "{stderr}");

    let integers = dir.path().join("integers.npy");
    write_npy(&integers, "<i4", 30, 30, 4, |i, j| if i == j { 1.0 } else { 0.0 });
    let output = run(&args_with(&[
        "--out",
        out,
        "--load-theta",
        integers.to_str().unwrap(),
    ]));
    assert!(!output.status.success());
    let stderr = stderr_of(&output);
    assert!(stderr.contains("integers.npy"), "{stderr}");
    assert!(stderr.contains("30 x 30"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");

    // The identity: the model becomes min ‖x‖₁ s.t. Ax = d (basis pursuit).
    let identity = dir.path().join("identity.npy");
    write_npy(&identity, "<f8", 30, 30, 8, |i, j| if i == j { 1.0 } else { 0.0 });
    let output = run(&args_with(&[
        "--out",
        out,
        "--quiet",
        "--load-theta",
        identity.to_str().unwrap(),
    ]));
    assert_success(&output);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("loaded Θ"), "{stdout}");
    let report = read_report(Path::new(out));
    assert_eq!(report["epochs"].as_array().unwrap().len(), 0);
    assert!(
        report["training"]["theta_source"]
            .as_str()
            .unwrap()
            .contains("identity.npy")
    );
    // Θ is used as given: its spectral norm is already 1.
    let written = npy::read_matrix::<f64>(&Path::new(out).join("theta_trained.npy")).unwrap();
    for i in 0..30 {
        for j in 0..30 {
            assert_eq!(
                written[(i, j)],
                if i == j { 1.0 } else { 0.0 },
                "entry ({i}, {j})"
            );
        }
    }
}

#[test]
fn certificate_and_figures_are_written() {
    let dir = TempDir::new("workflow-certificate");
    let out = dir.path().to_str().unwrap();
    let output = run(&args_with(&["--out", out, "--quiet"]));
    assert_success(&output);
    let stdout = String::from_utf8_lossy(&output.stdout);
    for signal in [
        "true x*",
        "another sample's x*",
        "least squares",
        "model inference",
    ] {
        assert!(stdout.contains(signal), "{stdout}");
    }

    let report = read_report(dir.path());
    let certificate = &report["certificate"];
    let signals = certificate["signals"].as_array().unwrap();
    assert_eq!(signals.len(), 4);
    let label =
        |signal: usize, property: usize| signals[signal]["labels"][property].as_str().map(String::from);
    // The true x* satisfies A x = d, and another sample's x* does not.
    assert_eq!(label(0, 1).as_deref(), Some("pass"));
    assert_eq!(label(1, 1).as_deref(), Some("fail"));
    // Only the inference has a fixed-point residual.
    assert_eq!(label(0, 2), None);
    assert!(label(3, 2).is_some());
    for share in certificate["test_shares"].as_array().unwrap() {
        let total: f64 = ["pass", "warning", "fail", "undefined"]
            .iter()
            .map(|k| share[k].as_f64().unwrap())
            .sum();
        assert!((total - 1.0).abs() < 1e-12, "{share}");
    }
    let sparsity = &certificate["properties"][0];
    assert!(sparsity["pass"].as_f64().unwrap() <= sparsity["warn"].as_f64().unwrap());

    let calibration = std::fs::read_to_string(dir.path().join("certificate.txt")).unwrap();
    assert!(calibration.contains("sparsity"), "{calibration}");

    for name in ["theta_x", "training_curves", "convergence", "sparsity_histogram"] {
        let svg = std::fs::read_to_string(dir.path().join(format!("{name}.svg"))).unwrap();
        assert!(svg.contains("<svg"), "{name}.svg");
        let png = std::fs::read(dir.path().join(format!("{name}.png"))).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "{name}.png");
        let width = u32::from_be_bytes(png[16..20].try_into().unwrap());
        let height = u32::from_be_bytes(png[20..24].try_into().unwrap());
        assert!(width >= 600, "{name}.png is {width} pixels wide");
        assert!(height >= 300, "{name}.png is {height} pixels high");
    }
    let files = report["figures"]["files"].as_array().unwrap();
    assert_eq!(files.len(), 8);

    // The trained Θ, evaluated again with --load-theta, brings its thresholds.
    let again = TempDir::new("workflow-certificate-again");
    let theta = dir.path().join("theta_trained.npy");
    let output = run(&args_with(&[
        "--out",
        again.path().to_str().unwrap(),
        "--quiet",
        "--load-theta",
        theta.to_str().unwrap(),
    ]));
    assert_success(&output);
    let loaded = read_report(again.path());
    assert_eq!(
        loaded["certificate"]["calibration_file"].as_str(),
        Some(dir.path().join("certificate.txt").to_str().unwrap())
    );
    assert_eq!(
        loaded["certificate"]["properties"], certificate["properties"],
        "thresholds read back differ from the saved ones"
    );
    let trained = report["test"]["trained"]["mse_test_depth"].as_f64().unwrap();
    let reloaded = loaded["test"]["trained"]["mse_test_depth"].as_f64().unwrap();
    assert!(
        (reloaded - trained).abs() <= 1e-4 * trained,
        "test MSE {reloaded} with the loaded Θ, {trained} after training"
    );
}

#[test]
fn negative_certificate_flags_name_the_flag() {
    for flag in ["--p-pass", "--p-warn", "--fidelity-pass", "--fidelity-warn"] {
        let output = run(&args_with(&[flag, "-0.1"]));
        assert!(!output.status.success(), "{flag} -0.1 was accepted");
        let stderr = stderr_of(&output);
        assert!(stderr.contains(&format!("invalid {flag} = -0.1")), "{stderr}");
    }
}

#[test]
fn interrupt_in_first_epoch_resumes() {
    let dir = TempDir::new("workflow-first-epoch");
    let out = dir.path().to_str().unwrap().to_string();
    let mut child = spawn(&args_with(&["--out", &out]));
    // settings.json is written as training starts, so the interrupt lands in epoch 1.
    let settings = dir.path().join("checkpoint").join("settings.json");
    let deadline = Instant::now() + Duration::from_secs(120);
    while !settings.exists() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before training"
        );
        assert!(Instant::now() < deadline, "training did not start after 120 s");
        std::thread::sleep(Duration::from_millis(1));
    }
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let output = child.wait_with_output().unwrap();
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(130), "stderr: {stderr}");
    assert!(stderr.contains("interrupted in epoch 1"), "{stderr}");

    // A new run into the folder would delete the unfinished checkpoint.
    let output = run(&args_with(&["--out", &out, "--quiet"]));
    assert!(!output.status.success());
    let stderr = stderr_of(&output);
    assert!(stderr.contains("unfinished run"), "{stderr}");
    assert!(stderr.contains("--resume"), "{stderr}");
    assert!(dir.path().join("checkpoint").join("checkpoint.txt").exists());

    // The staging folder of a killed run (no such process) is removed.
    let abandoned = dir.path().join(".partial-4194303999");
    std::fs::create_dir(&abandoned).unwrap();
    std::fs::write(abandoned.join("report.json"), "{}").unwrap();
    let resumed = run(&["--resume", &out, "--quiet"]);
    assert_success(&resumed);
    assert_eq!(epoch_losses(&read_report(dir.path())).len(), 3);
    assert!(!abandoned.exists(), "the abandoned staging folder is still there");
}

#[test]
fn load_theta_run_replaces_training_figures() {
    let dir = TempDir::new("workflow-replace-figures");
    let out = dir.path().to_str().unwrap();
    assert_success(&run(&args_with(&["--out", out, "--quiet"])));
    assert!(dir.path().join("training_curves.svg").exists());

    // Entries near 1e300 are beyond f32; the model does not depend on Θ's scale.
    let huge = dir.path().join("huge.npy");
    write_npy(&huge, "<f8", 30, 30, 8, |i, j| if i == j { 1e300 } else { 0.0 });
    let output = run(&args_with(&[
        "--out",
        out,
        "--quiet",
        "--load-theta",
        huge.to_str().unwrap(),
    ]));
    assert_success(&output);
    assert!(!dir.path().join("training_curves.svg").exists());
    assert!(!dir.path().join("training_curves.png").exists());
    assert!(dir.path().join("convergence.svg").exists());
    let written = npy::read_matrix::<f64>(&dir.path().join("theta_trained.npy")).unwrap();
    // Θ is the identity up to its scale, which the layer sets to unit spectral norm.
    assert!((written[(0, 0)] - 1.0).abs() < 1e-6, "{}", written[(0, 0)]);
    assert_eq!(written[(0, 1)], 0.0);
}

#[test]
fn load_theta_rejects_calibration_of_other_flags() {
    let dir = TempDir::new("workflow-calibration-flags");
    let out = dir.path().to_str().unwrap();
    assert_success(&run(&args_with(&["--out", out, "--quiet"])));
    let theta = dir.path().join("theta_trained.npy");
    let again = dir.path().join("again");
    let output = run(&args_with(&[
        "--out",
        again.to_str().unwrap(),
        "--load-theta",
        theta.to_str().unwrap(),
        "--fidelity-pass",
        "0.02",
    ]));
    assert!(!output.status.success());
    let stderr = stderr_of(&output);
    assert!(stderr.contains("certificate.txt"), "{stderr}");
    assert!(stderr.contains("--fidelity-pass 0.01"), "{stderr}");
    assert!(stderr.contains("--fidelity-pass 0.02"), "{stderr}");
    // The check runs before any evaluation.
    assert!(!stderr.contains("evaluating"), "{stderr}");
}

#[test]
fn certificate_table_uses_nonzero_signals() {
    let dir = TempDir::new("workflow-table-samples");
    let out = dir.path().to_str().unwrap();
    assert_success(&run(&args_with(&["--out", out, "--quiet"])));
    let report = read_report(dir.path());
    let certificate = &report["certificate"];
    let sample = certificate["test_sample"].as_u64().unwrap() as usize;
    let other = certificate["other_sample"].as_u64().unwrap() as usize;
    assert_ne!(sample, other);
    let targets = npy::read_matrix::<f64>(&dir.path().join("test_x.npy")).unwrap();
    // One sample per row in the file.
    for row in [sample, other] {
        let norm: f64 = (0..targets.ncols()).map(|j| targets[(row, j)].abs()).sum();
        assert!(norm > 0.0, "test sample {row} of the table has x* = 0");
    }
    let sparsity = certificate["signals"][0]["values"][0].as_f64().unwrap();
    assert!(sparsity > 0.0, "‖Θx*‖₁ = {sparsity}");
}
