mod indicator_point;
mod l1;
mod zero;

pub use indicator_point::{IndicatorPoint, PointSource};
pub use l1::L1Norm;
pub use zero::Zero;
