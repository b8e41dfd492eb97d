//! A boxed proximal map behaves as the map it boxes, method by method.

use faer::{Mat, mat};
use optlayer_core::{Parameterized, Prox};
use optlayer_ops::{BoxSet, L1Norm};

/// Asserts that `boxed` gives the same results as `plain`, bit for bit, on
/// one batch of inputs. Called with a `Box<dyn Prox<f64>>`, so that `B` is
/// the box and its forwarding methods run.
fn assert_forwards<B: Prox<f64>>(plain: &dyn Prox<f64>, boxed: &B) {
    let v = mat![[0.7, -2.0], [-0.1, 0.0], [3.0, -0.5]];
    let data = Mat::<f64>::zeros(0, 2);
    let cotangent = mat![[1.0, -1.0], [0.5, 2.0], [-3.0, 0.25]];
    let gamma = 0.4;

    assert_eq!(boxed.dim(), plain.dim());
    assert_eq!(boxed.data_rows_needed(), plain.data_rows_needed());
    assert_eq!(boxed.is_separable(), plain.is_separable());
    assert_eq!(boxed.is_indicator(), plain.is_indicator());
    assert_eq!(boxed.entrywise(gamma), plain.entrywise(gamma));
    for col in 0..2 {
        assert_eq!(
            boxed.value(v.as_ref(), data.as_ref(), col),
            plain.value(v.as_ref(), data.as_ref(), col)
        );
        assert_eq!(
            boxed.infeasibility(v.as_ref(), data.as_ref(), col),
            plain.infeasibility(v.as_ref(), data.as_ref(), col)
        );
    }

    let (mut expected, mut found) = (Mat::<f64>::zeros(3, 2), Mat::<f64>::zeros(3, 2));
    plain.prox(expected.as_mut(), v.as_ref(), gamma, data.as_ref());
    boxed.prox(found.as_mut(), v.as_ref(), gamma, data.as_ref());
    assert_eq!(found, expected);

    plain.prox_vjp(
        expected.as_mut(),
        v.as_ref(),
        gamma,
        data.as_ref(),
        cotangent.as_ref(),
    );
    boxed.prox_vjp(
        found.as_mut(),
        v.as_ref(),
        gamma,
        data.as_ref(),
        cotangent.as_ref(),
    );
    assert_eq!(found, expected);

    let shapes: Vec<Mat<f64>> = (0..plain.param_count())
        .map(|i| Mat::zeros(plain.param_info(i).nrows, plain.param_info(i).ncols))
        .collect();
    let (mut expected, mut found) = (shapes.clone(), shapes);
    plain.accumulate_grad(
        &mut expected,
        v.as_ref(),
        gamma,
        data.as_ref(),
        cotangent.as_ref(),
    );
    boxed.accumulate_grad(&mut found, v.as_ref(), gamma, data.as_ref(), cotangent.as_ref());
    assert_eq!(found, expected);

    assert_eq!(boxed.param_count(), plain.param_count());
    for i in 0..plain.param_count() {
        assert_eq!(boxed.param_info(i), plain.param_info(i));
        assert_eq!(boxed.param(i), plain.param(i));
    }
    assert_eq!(boxed.warm_start_state().len(), plain.warm_start_state().len());
}

#[test]
fn boxed_l1_norm_forwards_every_method() {
    let plain = L1Norm::learnable("w", 0.5).unwrap();
    let boxed: Box<dyn Prox<f64>> = Box::new(plain.clone());
    assert_forwards(&plain, &boxed);
}

#[test]
fn boxed_box_set_forwards_every_method() {
    let plain = BoxSet::uniform(-0.5, 1.0).unwrap();
    let boxed: Box<dyn Prox<f64>> = Box::new(plain.clone());
    assert_forwards(&plain, &boxed);
}

#[test]
fn boxed_parameter_writes_reach_the_map() {
    let mut boxed: Box<dyn Prox<f64>> = Box::new(L1Norm::learnable("w", 0.5).unwrap());
    boxed.param_mut(0).fill(2.0);
    boxed.after_param_update().unwrap();
    assert_eq!(boxed.param(0)[(0, 0)], 2.0);
    assert_eq!(boxed.entrywise(0.5), L1Norm::new(2.0).unwrap().entrywise(0.5));
}
