mod combinators;
mod indicator_point;
mod l1;
mod simplex;
mod squared_l2;
mod zero;

pub use combinators::{Conjugate, Scaled, SeparableBlock, SeparableSum, Translated};
pub use indicator_point::{IndicatorPoint, PointSource};
pub use l1::L1Norm;
pub use simplex::Simplex;
pub use squared_l2::SquaredL2;
pub use zero::Zero;
