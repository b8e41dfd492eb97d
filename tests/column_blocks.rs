//! Column blocks of the forward pass: a thread iterates its samples in blocks
//! no wider than `ForwardOptions::block_columns`, and the results do not
//! depend on the width, bit for bit.

mod common;

use common::{cast, recovery_batch, sparse_model, unit_column_matrix};
use faer::Mat;
use optlayer::problems::sparse_inverse::{SparseInverseConfig, SparseInverseProblem, build_model};
use optlayer::{
    AndersonOptions, BLOCK_STATE_BYTES, Error, ForwardOptions, ForwardResult, OptLayer, Scalar, Splitting,
    Status, block_columns,
};
use optlayer_testing::random::gaussian;

/// Asserts that two forward results agree bit for bit: states, iterations,
/// statuses, residuals and Anderson counts.
fn assert_same<T: Scalar>(other: &ForwardResult<T>, reference: &ForwardResult<T>, label: &str) {
    assert_eq!(other.samples.len(), reference.samples.len(), "{label}");
    for (j, (a, b)) in other.samples.iter().zip(&reference.samples).enumerate() {
        assert_eq!(a.iterations, b.iterations, "{label}: iterations of sample {j}");
        assert_eq!(a.status, b.status, "{label}: status of sample {j}");
        assert_eq!(
            a.residual.to_f64().unwrap().to_bits(),
            b.residual.to_f64().unwrap().to_bits(),
            "{label}: residual of sample {j}"
        );
        assert_eq!(a.anderson, b.anderson, "{label}: Anderson counts of sample {j}");
    }
    for j in 0..reference.state.ncols() {
        for i in 0..reference.state.nrows() {
            assert_eq!(
                other.state[(i, j)].to_f64().unwrap().to_bits(),
                reference.state[(i, j)].to_f64().unwrap().to_bits(),
                "{label}: state entry ({i}, {j})"
            );
        }
    }
}

/// Checks that nine samples that converge at different iterations give the
/// bits of one block in blocks of every width from 1 to 9 and wider, on one
/// thread and two, with and without Anderson acceleration.
fn widths_give_the_same_result<T: Scalar>() {
    let (theta, a, data) = recovery_batch(16, 8, 3, 9, 7);
    let data = cast::<T>(&data);
    let base = ForwardOptions::new(20_000, 1e-5);
    let layer = OptLayer::new(sparse_model::<T>(&theta, &a, true), base.clone()).unwrap();
    for anderson in [None, Some(AndersonOptions::default())] {
        let mut options = base.clone();
        options.anderson = anderson;
        let whole = layer
            .forward_with(data.as_ref(), &options.clone().with_block_columns(9))
            .unwrap();
        let iterations: Vec<usize> = whole.samples.iter().map(|s| s.iterations).collect();
        assert!(
            iterations.iter().any(|&k| k != iterations[0]),
            "samples should stop at different iterations: {iterations:?}"
        );
        assert!(whole.samples.iter().any(|s| s.status == Status::Converged));

        for threads in [1, 2] {
            for width in [1, 2, 3, 4, 5, 8, 9, 1000] {
                let blocked = layer
                    .forward_with(
                        data.as_ref(),
                        &options.clone().with_threads(threads).with_block_columns(width),
                    )
                    .unwrap();
                let label = format!(
                    "{}, width {width}, {threads} threads, Anderson {}",
                    std::any::type_name::<T>(),
                    options.anderson.is_some()
                );
                assert_same(&blocked, &whole, &label);
            }
        }
    }
}

#[test]
fn widths_give_the_same_result_f64() {
    widths_give_the_same_result::<f64>();
}

#[test]
fn widths_give_the_same_result_f32() {
    widths_give_the_same_result::<f32>();
}

/// Checks operators just above the rounding condition of `ThreadPlan`: Θ of
/// 46 x 46 and A of 45 x 46 have more than 2,048 entries each, so every
/// product of two columns or more takes faer's blocked kernel. Twelve
/// samples in blocks of several widths, from the initial state and from a
/// warm start, must give the bits of one block.
fn widths_above_kernel_threshold<T: Scalar>() {
    let (n, m, batch) = (46, 45, 12);
    assert!(n * n > 2048, "Θ has {} entries", n * n);
    assert!(m * n > 2048, "A has {} entries", m * n);
    let (theta, a, data) = recovery_batch(n, m, 3, batch, 7);
    let data = cast::<T>(&data);
    let base = ForwardOptions::new(400, 1e-4);
    let layer = OptLayer::new(sparse_model::<T>(&theta, &a, true), base.clone()).unwrap();
    let warm = layer
        .forward_with(data.as_ref(), &ForwardOptions::new(30, 0.0))
        .unwrap()
        .state;
    for anderson in [None, Some(AndersonOptions::default())] {
        let mut options = base.clone();
        options.anderson = anderson;
        let whole = layer
            .forward_with(data.as_ref(), &options.clone().with_block_columns(batch))
            .unwrap();
        let iterations: Vec<usize> = whole.samples.iter().map(|s| s.iterations).collect();
        assert!(
            iterations.iter().any(|&k| k != iterations[0]),
            "samples should stop at different iterations: {iterations:?}"
        );
        let whole_warm = layer
            .forward_from(
                data.as_ref(),
                warm.as_ref(),
                &options.clone().with_block_columns(batch),
            )
            .unwrap();
        for threads in [1, 2] {
            for width in [1, 2, 3, 5] {
                let blocked = options.clone().with_threads(threads).with_block_columns(width);
                let label = format!(
                    "{}, width {width}, {threads} threads, Anderson {}",
                    std::any::type_name::<T>(),
                    options.anderson.is_some()
                );
                let cold = layer.forward_with(data.as_ref(), &blocked).unwrap();
                assert_same(&cold, &whole, &label);
                let warm_blocked = layer
                    .forward_from(data.as_ref(), warm.as_ref(), &blocked)
                    .unwrap();
                assert_same(&warm_blocked, &whole_warm, &format!("{label}, warm start"));
            }
        }
    }
}

#[test]
fn widths_above_kernel_threshold_f64() {
    widths_above_kernel_threshold::<f64>();
}

#[test]
fn widths_above_kernel_threshold_f32() {
    widths_above_kernel_threshold::<f32>();
}

/// Checks that 300 samples of the reference problem (n = 250, m = 100) give
/// the same bits in the default blocks, in blocks of 7 and in one block.
fn reference_widths_agree<T: Scalar>() {
    let problem = SparseInverseProblem::generate(&SparseInverseConfig {
        train_samples: 300,
        test_samples: 1,
        ..SparseInverseConfig::default()
    })
    .unwrap();
    let model = build_model::<T>(&problem.theta0, &problem.a, problem.reference_steps().unwrap()).unwrap();
    let dim = model.state_dim();
    let default_width = block_columns::<T>(dim);
    assert!(
        default_width < 300,
        "default width {default_width} should split 300 samples"
    );
    let data = cast::<T>(&problem.train.data().to_owned());
    let options = ForwardOptions::new(40, 0.0);
    let layer = OptLayer::new(model, options.clone()).unwrap();
    let whole = layer
        .forward_with(data.as_ref(), &options.clone().with_block_columns(300))
        .unwrap();
    let default = layer.forward_with(data.as_ref(), &options).unwrap();
    assert_same(&default, &whole, "default width");
    let narrow = layer
        .forward_with(data.as_ref(), &options.clone().with_block_columns(7))
        .unwrap();
    assert_same(&narrow, &whole, "width 7");
    let two = layer
        .forward_with(data.as_ref(), &options.with_threads(2))
        .unwrap();
    assert_same(&two, &whole, "default width, 2 threads");
}

#[test]
fn reference_widths_agree_f64() {
    reference_widths_agree::<f64>();
}

#[test]
fn reference_widths_agree_f32() {
    reference_widths_agree::<f32>();
}

#[test]
fn zero_width_is_rejected() {
    let a = unit_column_matrix(3, 5, 1);
    let layer = OptLayer::new(
        sparse_model::<f64>(&gaussian(5, 5, 2), &a, true),
        ForwardOptions::default(),
    )
    .unwrap();
    let data = Mat::<f64>::zeros(3, 2);
    let error = layer
        .forward_with(data.as_ref(), &ForwardOptions::default().with_block_columns(0))
        .unwrap_err();
    match &error {
        Error::InvalidParameter { name, .. } => assert_eq!(name, "block_columns"),
        other => panic!("unexpected error {other:?}"),
    }
    assert!(error.to_string().contains("block_columns"), "{error}");
    assert!(
        OptLayer::new(
            sparse_model::<f64>(&gaussian(5, 5, 2), &a, true),
            ForwardOptions::default().with_block_columns(0)
        )
        .is_err()
    );
}

#[test]
fn default_width_fills_the_block_bytes() {
    // 950 entries of 8 bytes give 1,048,576 / 7,600 = 137 columns. Entries
    // of 4 bytes give 275, capped at 256.
    assert_eq!(BLOCK_STATE_BYTES, 1_048_576);
    assert_eq!(block_columns::<f64>(950), 137);
    assert_eq!(block_columns::<f32>(950), 256);
    assert_eq!(block_columns::<f32>(2000), 131);
    // Small states are capped at 256 columns, large ones kept at 32.
    assert_eq!(block_columns::<f64>(10), 256);
    assert_eq!(block_columns::<f64>(1_000_000), 32);
    assert_eq!(block_columns::<f32>(0), 256);
}
