//! Separability, indicator flags and infeasibility of the prox combinators,
//! and the combinations that `BoxConstrained` accepts because of them.

use faer::{Mat, mat};
use optlayer_core::{Error, Prox};
use optlayer_ops::{
    BoxConstrained, BoxSet, Conjugate, L1Norm, L2Norm, Nonnegative, Scaled, SeparableBlock, SeparableSum,
    Simplex, Translated,
};

fn unit_box() -> BoxSet<f64> {
    BoxSet::uniform(0.0, 1.0).unwrap()
}

/// Returns `(is_separable, is_indicator)`.
fn flags(prox: &dyn Prox<f64>) -> (bool, bool) {
    (prox.is_separable(), prox.is_indicator())
}

#[test]
fn scaled_keeps_inner_flags() {
    for factor in [0.0, 0.5, 2.0] {
        let set = Scaled::new(unit_box(), factor).unwrap();
        assert_eq!(flags(&set), (true, true), "box scaled by {factor}");
        let l1 = Scaled::new(L1Norm::new(1.0).unwrap(), factor).unwrap();
        assert_eq!(flags(&l1), (true, false), "l1 scaled by {factor}");
        let l2 = Scaled::new(L2Norm::new(1.0).unwrap(), factor).unwrap();
        assert_eq!(flags(&l2), (false, false), "l2 scaled by {factor}");
    }
}

#[test]
fn translated_keeps_inner_flags() {
    let set = Translated::new(unit_box(), vec![1.0, -1.0]).unwrap();
    assert_eq!(flags(&set), (true, true));
    let by_data = Translated::by_data(unit_box(), 0, 2).unwrap();
    assert_eq!(flags(&by_data), (true, true));
    let l1 = Translated::new(L1Norm::new(1.0).unwrap(), vec![1.0, -1.0]).unwrap();
    assert_eq!(flags(&l1), (true, false));
    let simplex = Translated::new(Simplex, vec![1.0, -1.0]).unwrap();
    assert_eq!(flags(&simplex), (false, true));
}

#[test]
fn separable_sum_flags_need_every_block() {
    let sets = SeparableSum::new(
        3,
        vec![
            SeparableBlock::new(0..2, unit_box()),
            SeparableBlock::new(2..3, Nonnegative),
        ],
    )
    .unwrap();
    assert_eq!(flags(&sets), (true, true));
    let mixed = SeparableSum::new(
        3,
        vec![
            SeparableBlock::new(0..2, unit_box()),
            SeparableBlock::new(2..3, L1Norm::new(1.0).unwrap()),
        ],
    )
    .unwrap();
    assert_eq!(flags(&mixed), (true, false));
    let with_simplex = SeparableSum::new(
        3,
        vec![
            SeparableBlock::new(0..1, Nonnegative),
            SeparableBlock::new(1..3, Simplex),
        ],
    )
    .unwrap();
    assert_eq!(flags(&with_simplex), (false, true));
}

#[test]
fn conjugate_claims_neither_flag() {
    assert_eq!(flags(&Conjugate::new(unit_box())), (false, false));
    assert_eq!(flags(&Conjugate::new(L1Norm::new(1.0).unwrap())), (false, false));
}

#[test]
fn combinator_infeasibility_is_distance_to_set() {
    let no_data = Mat::<f64>::zeros(0, 2);
    // Columns [2, −1] and [0.5, 0.5]: distances √2 and 0 from [0, 1]².
    let v = mat![[2.0, 0.5], [-1.0, 0.5]];
    let scaled = Scaled::new(unit_box(), 3.0).unwrap();
    assert_eq!(
        scaled.infeasibility(v.as_ref(), no_data.as_ref(), 0),
        Some(2.0f64.sqrt())
    );
    assert_eq!(scaled.infeasibility(v.as_ref(), no_data.as_ref(), 1), Some(0.0));

    // The shifted set is [1, 2]²: [2, −1] is 2 away, [0.5, 0.5] is √0.5 away.
    let translated = Translated::new(unit_box(), vec![1.0, 1.0]).unwrap();
    assert_eq!(
        translated.infeasibility(v.as_ref(), no_data.as_ref(), 0),
        Some(2.0)
    );
    assert_eq!(
        translated.infeasibility(v.as_ref(), no_data.as_ref(), 1),
        Some(0.5f64.sqrt())
    );
    // With the shift in data rows 1..3 of each sample.
    let by_data = Translated::by_data(unit_box(), 1, 2).unwrap();
    let data = mat![[9.0, 9.0], [1.0, 0.0], [1.0, 0.0]];
    assert_eq!(by_data.infeasibility(v.as_ref(), data.as_ref(), 0), Some(2.0));
    assert_eq!(by_data.infeasibility(v.as_ref(), data.as_ref(), 1), Some(0.0));

    // [0, 1] on row 0 and [0, ∞) on row 1: [2, −1] is √2 away.
    let sum = SeparableSum::new(
        2,
        vec![
            SeparableBlock::new(0..1, unit_box()),
            SeparableBlock::new(1..2, Nonnegative),
        ],
    )
    .unwrap();
    assert_eq!(
        sum.infeasibility(v.as_ref(), no_data.as_ref(), 0),
        Some(2.0f64.sqrt())
    );
    assert_eq!(sum.infeasibility(v.as_ref(), no_data.as_ref(), 1), Some(0.0));

    // Functions that are not indicators report no distance.
    let l1 = Scaled::new(L1Norm::new(1.0).unwrap(), 2.0).unwrap();
    assert_eq!(l1.infeasibility(v.as_ref(), no_data.as_ref(), 0), None);
    let conjugate = Conjugate::new(L1Norm::new(1.0).unwrap());
    assert_eq!(conjugate.infeasibility(v.as_ref(), no_data.as_ref(), 0), None);
}

#[test]
fn box_constrained_accepts_scaled_l1() {
    // 2‖x‖₁ on [−1, 2]: soft-threshold at 2γ = 1, then clip.
    let g = BoxConstrained::new(
        Scaled::new(L1Norm::new(1.0).unwrap(), 2.0).unwrap(),
        vec![-1.0; 4],
        vec![2.0; 4],
    )
    .unwrap();
    let v = mat![[4.0], [0.5], [-1.5], [-3.0]];
    let mut out = Mat::zeros(4, 1);
    g.prox(out.as_mut(), v.as_ref(), 0.5, Mat::<f64>::zeros(0, 1).as_ref());
    assert_eq!(out, mat![[2.0], [0.0], [-0.5], [-1.0]]);
}

#[test]
fn box_constrained_rejects_wrapped_sets() {
    // Separable indicators: clipping their projection would leave the set.
    let scaled = Scaled::new(unit_box(), 2.0).unwrap();
    let err = BoxConstrained::new(scaled, vec![-1.0; 2], vec![2.0; 2]).unwrap_err();
    assert!(matches!(err, Error::InvalidModel { .. }), "{err}");
    assert!(err.to_string().contains("indicator"), "{err}");
    let scaled_nonnegative = Scaled::new(Nonnegative, 0.0).unwrap();
    let err = BoxConstrained::new(scaled_nonnegative, vec![-3.0], vec![-1.0]).unwrap_err();
    assert!(err.to_string().contains("indicator"), "{err}");
}
