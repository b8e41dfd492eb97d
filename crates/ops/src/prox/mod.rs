mod box_constrained;
mod elastic_net;
mod huber;
mod indicator_point;
mod l1;
mod l1_ball;
mod l2;
mod linf;
mod simplex;
mod squared_distance;
mod squared_l2;
#[cfg(test)]
mod test_support;
mod zero;

pub use box_constrained::BoxConstrained;
pub use elastic_net::ElasticNet;
pub use huber::Huber;
pub use indicator_point::{IndicatorPoint, PointSource};
pub use l1::L1Norm;
pub use l1_ball::L1Ball;
pub use l2::L2Norm;
pub use linf::LinfNorm;
pub use simplex::Simplex;
pub use squared_distance::SquaredDistance;
pub use squared_l2::SquaredL2;
pub use zero::Zero;
