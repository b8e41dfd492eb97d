//! Data-row offsets whose end `offset + len` does not fit in `usize` are
//! rejected at construction, before a forward pass could index past the data.

use optlayer_core::{Error, Prox};
use optlayer_ops::{IndicatorPoint, L1Norm, SquaredDistance, Translated};

fn assert_offset_rejected<P: std::fmt::Debug>(result: optlayer_core::Result<P>) {
    let err = result.unwrap_err();
    assert!(matches!(err, Error::InvalidValue { .. }), "{err}");
    assert!(err.to_string().contains("offset"), "{err}");
}

#[test]
fn translated_offset_overflow_rejected() {
    assert_offset_rejected(Translated::by_data(
        L1Norm::<f64>::new(1.0).unwrap(),
        usize::MAX,
        2,
    ));
    assert_offset_rejected(Translated::by_data(
        L1Norm::<f64>::new(1.0).unwrap(),
        usize::MAX - 1,
        2,
    ));
    let last = Translated::by_data(L1Norm::<f64>::new(1.0).unwrap(), usize::MAX - 2, 2).unwrap();
    assert_eq!(last.data_rows_needed(), usize::MAX);
}

#[test]
fn indicator_point_offset_overflow_rejected() {
    assert_offset_rejected(IndicatorPoint::<f64>::from_data(usize::MAX, 1));
    assert_offset_rejected(IndicatorPoint::<f64>::from_data(2, usize::MAX));
    let last = IndicatorPoint::<f64>::from_data(usize::MAX - 1, 1).unwrap();
    assert_eq!(last.data_rows_needed(), usize::MAX);
}

#[test]
fn squared_distance_offset_overflow_rejected() {
    assert_offset_rejected(SquaredDistance::<f64>::from_data(1.0, usize::MAX, 3));
    let last = SquaredDistance::<f64>::from_data(1.0, usize::MAX - 3, 3).unwrap();
    assert_eq!(last.data_rows_needed(), usize::MAX);
}
