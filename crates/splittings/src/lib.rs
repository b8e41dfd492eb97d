//! Splitting algorithms for optlayer.
//!
//! Each scheme implements [`Splitting`](optlayer_core::Splitting): one
//! iteration and its vector-Jacobian product, so any of them can be trained
//! with [`FixedPointJfb`](optlayer_core::FixedPointJfb).
//!
//! - [`LinearizedAdmm`]: `min_x Σ_i g_i(K_i x)` over a list of [`Block`]s.
//! - [`DavisYin`]: `min_x f(x; d) + g(x) + h(x)` with `f` smooth.
//! - [`DouglasRachford`]: `min_x g(x) + h(x)`.

mod davis_yin;
mod ladmm;
mod stacked;

pub use davis_yin::{DavisYin, DavisYinSteps, DouglasRachford, GammaRule};
pub use ladmm::{Block, LadmmSteps, LinearizedAdmm, StepRule};
pub use stacked::StackedOperator;
