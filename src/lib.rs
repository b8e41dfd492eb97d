//! optlayer: trainable optimization layers in Rust.
//!
//! An inference `N_Θ(d) = argmin_x f_Θ(x; d)` mixes analytic terms
//! (constraints, objectives, regularizers) with data-driven terms whose weights
//! `Θ` are learned. The argmin is evaluated as the fixed point of a splitting
//! iteration `z⁺ = T_Θ(z; d)`, and `Θ` is trained on pairs `(d, x*)` with
//! Jacobian-free backpropagation. The forward pass iterates to the fixed
//! point without recording anything, and the backward pass differentiates
//! the last step alone.
//!
//! This crate re-exports the workspace:
//!
//! - the core traits at the top level ([`Operator`], [`Prox`], [`Splitting`],
//!   [`OptLayer`], [`FixedPointJfb`], [`Parameterized`], [`Scalar`]);
//! - [`ops`]: operators and proximal maps;
//! - [`splittings`]: splitting algorithms;
//! - [`train`]: datasets, `.npy` files, Adam and the training loop;
//! - [`problems`]: reference problems and baselines.
//!
//! # Example
//! Recover a sparse signal with `min ‖Θx‖₁ s.t. Ax = d` for a fixed `Θ = I`:
//! ```
//! use faer::{Mat, mat};
//! use optlayer::ops::{Dense, IndicatorPoint, L1Norm, LearnableDense};
//! use optlayer::splittings::{Block, LadmmSteps, LinearizedAdmm};
//! use optlayer::{ForwardOptions, OptLayer, Status};
//!
//! let a = mat![[1.0, 2.0]];
//! let blocks = vec![
//!     Block::new(LearnableDense::new("theta", Mat::identity(2, 2))?, L1Norm::new(1.0)?),
//!     Block::new(Dense::new(a)?, IndicatorPoint::from_data(0, 1)?),
//! ];
//! let steps = LadmmSteps { alpha: 0.5, beta: 0.3, lambda: 1.0 };
//! let splitting: LinearizedAdmm<f64> = LinearizedAdmm::new(2, 1, blocks, steps)?;
//! let layer = OptLayer::new(splitting, ForwardOptions::new(10_000, 1e-10))?;
//! let result = layer.forward(mat![[2.0]].as_ref())?;
//! assert_eq!(result.samples[0].status, Status::Converged);
//! assert!((result.x[(0, 0)] - 0.0).abs() < 1e-6 && (result.x[(1, 0)] - 1.0).abs() < 1e-6);
//! # Ok::<(), optlayer::Error>(())
//! ```

pub use optlayer_core::*;

/// Operators and proximal maps.
pub mod ops {
    pub use optlayer_ops::*;
}

/// Splitting algorithms.
pub mod splittings {
    pub use optlayer_splittings::*;
}

/// Datasets, `.npy` files, Adam and the training loop.
pub mod train {
    pub use optlayer_train::*;
}

/// Reference problems and baselines.
pub mod problems {
    pub use optlayer_problems::*;
}
