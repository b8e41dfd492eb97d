mod affine_set;
mod box_set;
mod indicator_point;
mod l1;
mod l2_ball;
mod linf_ball;
mod nonnegative;
mod projection;
#[cfg(test)]
mod projection_checks;
mod simplex;
mod squared_l2;
mod zero;

pub use affine_set::AffineSet;
pub use box_set::BoxSet;
pub use indicator_point::{IndicatorPoint, PointSource};
pub use l1::L1Norm;
pub use l2_ball::L2Ball;
pub use linf_ball::LinfBall;
pub use nonnegative::Nonnegative;
pub use simplex::Simplex;
pub use squared_l2::SquaredL2;
pub use zero::Zero;
