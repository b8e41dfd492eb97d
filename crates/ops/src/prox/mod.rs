mod box_constrained;
mod indicator_point;
mod l1;
mod simplex;
mod squared_distance;
mod squared_l2;
mod zero;

pub use box_constrained::BoxConstrained;
pub use indicator_point::{IndicatorPoint, PointSource};
pub use l1::L1Norm;
pub use simplex::Simplex;
pub use squared_distance::SquaredDistance;
pub use squared_l2::SquaredL2;
pub use zero::Zero;
