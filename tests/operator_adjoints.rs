//! The dot test `⟨K x, y⟩ = ⟨x, Kᵀ y⟩` on random batches for every built-in
//! operator: `Dense`, `LearnableDense` with and without normalization,
//! `Identity`, `ForwardDifference` and the `StackedOperator` of linearized
//! ADMM.

use faer::Mat;
use optlayer::Operator;
use optlayer::ops::{Dense, ForwardDifference, Identity, LearnableDense, Normalization};
use optlayer::splittings::StackedOperator;
use optlayer_testing::fd::dot_test;
use optlayer_testing::random::gaussian;
use proptest::prelude::*;

/// Returns the dot-test error of `op` on random batches of `batch` columns.
fn dot_error(op: &dyn Operator<f64>, batch: usize, seed: u64) -> f64 {
    let x = gaussian(op.ncols(), batch, seed);
    let y = gaussian(op.nrows(), batch, seed + 1);
    dot_test(op, x.as_ref(), y.as_ref())
}

proptest! {
    #![proptest_config(optlayer_testing::proptest_config(48))]

    #[test]
    fn every_operator_passes_dot_test(
        rows in 1usize..12, cols in 1usize..12, batch in 1usize..5, seed in 0u64..100_000,
    ) {
        let matrix = gaussian(rows, cols, seed + 2);
        let dense = Dense::new(matrix.clone()).unwrap();
        let learnable = LearnableDense::new("theta", matrix.clone()).unwrap();
        let normalized = LearnableDense::new("theta", matrix)
            .unwrap()
            .with_normalization(Normalization::unit_spectral_norm())
            .unwrap();
        let identity = Identity::new(cols);
        let difference = ForwardDifference::new(cols).unwrap();
        let operators: [(&str, &dyn Operator<f64>); 5] = [
            ("dense", &dense),
            ("learnable dense", &learnable),
            ("learnable dense, unit spectral norm", &normalized),
            ("identity", &identity),
            ("forward difference", &difference),
        ];
        for (name, op) in operators {
            let error = dot_error(op, batch, seed);
            prop_assert!(error < 1e-13, "{name}: dot-test error {error:e}");
        }

        let stacked = StackedOperator::new(vec![&dense, &difference, &normalized, &identity], cols);
        prop_assert_eq!(stacked.nrows(), 2 * rows + 2 * cols);
        let error = dot_error(&stacked, batch, seed);
        prop_assert!(error < 1e-13, "stacked: dot-test error {error:e}");
    }
}

#[test]
fn forward_difference_dot_test_value() {
    // Dx = [1, 2, 3, 0] and Dᵀy = [−1, 2, −3, 2]: both inner products are 5.
    let op = ForwardDifference::new(4).unwrap();
    let x = Mat::from_fn(4, 1, |i, _| [1.0, 2.0, 4.0, 7.0][i]);
    let y = Mat::from_fn(4, 1, |i, _| [1.0, -1.0, 2.0, 5.0][i]);
    let mut buffer = faer::dyn_stack::MemBuffer::new(faer::dyn_stack::StackReq::EMPTY);
    let stack = faer::dyn_stack::MemStack::new(&mut buffer);
    let mut dx = Mat::zeros(4, 1);
    op.apply(
        dx.as_mut(),
        faer::Accum::Replace,
        1.0,
        x.as_ref(),
        faer::Par::Seq,
        stack,
    );
    let mut dty = Mat::zeros(4, 1);
    op.apply_adjoint(
        dty.as_mut(),
        faer::Accum::Replace,
        1.0,
        y.as_ref(),
        faer::Par::Seq,
        stack,
    );
    let lhs: f64 = (0..4).map(|i| dx[(i, 0)] * y[(i, 0)]).sum();
    let rhs: f64 = (0..4).map(|i| x[(i, 0)] * dty[(i, 0)]).sum();
    assert_eq!(lhs, 5.0);
    assert_eq!(rhs, 5.0);
    assert_eq!(dot_test(&op, x.as_ref(), y.as_ref()), 0.0);
}

#[test]
fn wrong_adjoint_fails_dot_test() {
    // The dot test must detect an adjoint that is off: Dᵀ replaced by D.
    struct NotAdjoint(ForwardDifference);
    impl optlayer::Parameterized<f64> for NotAdjoint {}
    impl Operator<f64> for NotAdjoint {
        fn nrows(&self) -> usize {
            Operator::<f64>::nrows(&self.0)
        }
        fn ncols(&self) -> usize {
            Operator::<f64>::ncols(&self.0)
        }
        fn apply(
            &self,
            out: faer::MatMut<'_, f64>,
            accum: faer::Accum,
            alpha: f64,
            x: faer::MatRef<'_, f64>,
            par: faer::Par,
            stack: &mut faer::dyn_stack::MemStack,
        ) {
            self.0.apply(out, accum, alpha, x, par, stack);
        }
        fn apply_adjoint(
            &self,
            out: faer::MatMut<'_, f64>,
            accum: faer::Accum,
            alpha: f64,
            y: faer::MatRef<'_, f64>,
            par: faer::Par,
            stack: &mut faer::dyn_stack::MemStack,
        ) {
            self.0.apply(out, accum, alpha, y, par, stack);
        }
    }
    let op = NotAdjoint(ForwardDifference::new(6).unwrap());
    assert!(dot_error(&op, 3, 1) > 1e-3);
}
