//! Checkpoints used from user training code: the proximal-gradient,
//! Davis-Yin and Condat-Vu models with learnable least-squares terms resume
//! bit for bit, and saves keep files that are not snapshots.

use std::fs;
use std::ops::ControlFlow;

use faer::Mat;
use optlayer::Scalar;
use optlayer::ops::{BoxConstrained, BoxSet, Identity, L1Norm, LearnableDense, LeastSquares};
use optlayer::splittings::{
    Acceleration, CondatVu, DavisYin, DavisYinSteps, PrimalDualSteps, ProximalGradient,
};
use optlayer::train::{Adam, AdamConfig, Checkpoint, Dataset, EpochOutcome, TrainConfig, Trainer};
use optlayer::{ForwardOptions, OptLayer, Parameterized, Splitting};
use optlayer_testing::conformance::cast;
use optlayer_testing::random::gaussian;
use optlayer_testing::temp::TempDir;

const M: usize = 6;
const N: usize = 4;
const SAMPLES: usize = 10;

fn least_squares<T: Scalar>() -> LeastSquares<T> {
    let a = gaussian(M, N, 31);
    LeastSquares::new(LearnableDense::new("a", cast::<T>(a.as_ref())).unwrap()).unwrap()
}

fn proximal_gradient<T: Scalar>() -> ProximalGradient<T> {
    let g = BoxConstrained::new(
        L1Norm::learnable("mu", T::lit(0.3)).unwrap(),
        vec![T::lit(-0.5); N],
        vec![T::lit(0.7); N],
    )
    .unwrap();
    ProximalGradient::new(least_squares::<T>(), g, M, Acceleration::None).unwrap()
}

fn davis_yin<T: Scalar>() -> DavisYin<T> {
    DavisYin::new(
        N,
        M,
        Box::new(least_squares::<T>()),
        Box::new(BoxSet::uniform(T::lit(-0.5), T::lit(0.7)).unwrap()),
        Box::new(L1Norm::learnable("mu", T::lit(0.3)).unwrap()),
        DavisYinSteps::default(),
    )
    .unwrap()
}

fn condat_vu<T: Scalar>() -> CondatVu<T> {
    CondatVu::with_smooth(
        M,
        Box::new(least_squares::<T>()),
        Box::new(Identity::new(N)),
        Box::new(BoxSet::uniform(T::lit(-0.5), T::lit(0.7)).unwrap()),
        Box::new(L1Norm::learnable("mu", T::lit(0.3)).unwrap()),
        PrimalDualSteps::default(),
    )
    .unwrap()
}

fn dataset<T: Scalar>() -> Dataset<T> {
    let data = gaussian(M, SAMPLES, 32);
    let targets = gaussian(N, SAMPLES, 33);
    let targets = Mat::from_fn(N, SAMPLES, |i, j| 0.3 * targets[(i, j)]);
    Dataset::new(cast::<T>(data.as_ref()), cast::<T>(targets.as_ref())).unwrap()
}

fn config() -> TrainConfig {
    TrainConfig {
        epochs: 3,
        batch_size: 4,
        seed: 9,
        forward: ForwardOptions::new(200, 1e-7),
        eval_forward: ForwardOptions::new(200, 1e-7),
        ..TrainConfig::default()
    }
}

fn new_trainer<S: Splitting>(layer: &OptLayer<S>) -> Trainer<S::Real> {
    let adam = AdamConfig {
        learning_rate: 2e-2,
        ..AdamConfig::default()
    };
    Trainer::new(config(), Adam::new(adam, layer).unwrap()).unwrap()
}

fn params<S: Splitting>(layer: &OptLayer<S>) -> Vec<Mat<S::Real>> {
    (0..layer.param_count())
        .map(|i| layer.param(i).to_owned())
        .collect()
}

/// Trains 3 epochs without interruption, then again with a save after
/// `stop_batch` batches of epoch 2, a load and a resume into a fresh layer,
/// and asserts that both runs end with the same bits.
fn resume_matches<S: Splitting>(build: impl Fn() -> S, label: &str, stop_batch: usize) {
    let train = dataset::<S::Real>();
    let forward = ForwardOptions::new(200, 1e-7);

    let mut layer = OptLayer::new(build(), forward.clone()).unwrap();
    let mut trainer = new_trainer(&layer);
    trainer
        .fit(&mut layer, &train, None, |_| ControlFlow::Continue(()))
        .unwrap();
    let expected = params(&layer);
    let expected_state = layer.warm_start_state();

    let dir = TempDir::new(label);
    let mut layer = OptLayer::new(build(), forward.clone()).unwrap();
    let mut trainer = new_trainer(&layer);
    trainer.run_epoch(&mut layer, &train, None).unwrap();
    let outcome = trainer
        .run_epoch_with(&mut layer, &train, None, |batch| {
            if batch.batch == stop_batch {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .unwrap();
    assert!(
        matches!(outcome, EpochOutcome::Interrupted { epoch: 2, .. }),
        "{outcome:?}"
    );
    trainer.checkpoint(&layer).save(dir.path()).unwrap();
    drop(layer);

    let checkpoint = Checkpoint::<S::Real>::load(dir.path()).unwrap();
    let mut layer = OptLayer::new(build(), forward).unwrap();
    let mut trainer = Trainer::resume(checkpoint, config(), &mut layer, train.len()).unwrap();
    trainer
        .fit(&mut layer, &train, None, |_| ControlFlow::Continue(()))
        .unwrap();
    assert_eq!(trainer.epoch(), 3);
    let found = params(&layer);
    for (index, (found, expected)) in found.iter().zip(&expected).enumerate() {
        for j in 0..expected.ncols() {
            for i in 0..expected.nrows() {
                assert!(
                    found[(i, j)] == expected[(i, j)],
                    "{label}: parameter {index} entry ({i}, {j}) is {:e}, expected {:e}",
                    found[(i, j)].to_f64_lossless(),
                    expected[(i, j)].to_f64_lossless()
                );
            }
        }
    }
    let found_state = layer.warm_start_state();
    assert_eq!(
        found_state.len(),
        expected_state.len(),
        "{label}: warm-start count"
    );
    for (index, (found, expected)) in found_state.iter().zip(&expected_state).enumerate() {
        assert!(found == expected, "{label}: warm-start matrix {index} differs");
    }
}

#[test]
fn proximal_gradient_resumes_bitwise() {
    resume_matches(proximal_gradient::<f64>, "pg-f64", 1);
    resume_matches(proximal_gradient::<f32>, "pg-f32", 2);
}

#[test]
fn davis_yin_resumes_bitwise() {
    resume_matches(davis_yin::<f64>, "dy-f64", 1);
    resume_matches(davis_yin::<f32>, "dy-f32", 2);
}

#[test]
fn condat_vu_resumes_bitwise() {
    resume_matches(condat_vu::<f64>, "cv-f64", 1);
    resume_matches(condat_vu::<f32>, "cv-f32", 2);
}

#[test]
fn save_keeps_unrelated_snapshot_names() {
    let train = dataset::<f64>();
    let mut layer = OptLayer::new(proximal_gradient::<f64>(), ForwardOptions::new(200, 1e-7)).unwrap();
    let mut trainer = new_trainer(&layer);
    let dir = TempDir::new("unrelated");
    fs::create_dir_all(dir.join("snapshot-photos")).unwrap();
    fs::write(dir.join("snapshot-photos").join("a.txt"), "keep").unwrap();
    fs::create_dir_all(dir.join("snapshot-1-2")).unwrap();
    fs::write(dir.join("notes.txt"), "keep").unwrap();
    trainer.checkpoint(&layer).save(dir.path()).unwrap();
    trainer.run_epoch(&mut layer, &train, None).unwrap();
    trainer.checkpoint(&layer).save(dir.path()).unwrap();
    assert!(dir.join("snapshot-photos").join("a.txt").is_file());
    assert!(dir.join("snapshot-1-2").is_dir());
    assert!(dir.join("notes.txt").is_file());
    assert_eq!(Checkpoint::<f64>::load(dir.path()).unwrap().epoch(), 1);
}

#[test]
fn checkpoint_before_any_epoch_resumes() {
    let train = dataset::<f64>();
    let forward = ForwardOptions::new(200, 1e-7);
    let mut layer = OptLayer::new(condat_vu::<f64>(), forward.clone()).unwrap();
    let mut trainer = new_trainer(&layer);
    let dir = TempDir::new("before-epoch");
    trainer.checkpoint(&layer).save(dir.path()).unwrap();
    trainer
        .fit(&mut layer, &train, None, |_| ControlFlow::Continue(()))
        .unwrap();
    let expected = params(&layer);

    let checkpoint = Checkpoint::<f64>::load(dir.path()).unwrap();
    assert_eq!(checkpoint.epoch(), 0);
    assert_eq!(checkpoint.train_len(), None);
    let mut layer = OptLayer::new(condat_vu::<f64>(), forward).unwrap();
    let mut trainer = Trainer::resume(checkpoint, config(), &mut layer, train.len()).unwrap();
    trainer
        .fit(&mut layer, &train, None, |_| ControlFlow::Continue(()))
        .unwrap();
    assert!(params(&layer) == expected);
}

#[test]
fn resume_rejects_other_splitting() {
    let forward = ForwardOptions::new(200, 1e-7);
    let train = dataset::<f64>();
    let mut layer = OptLayer::new(proximal_gradient::<f64>(), forward.clone()).unwrap();
    let mut trainer = new_trainer(&layer);
    trainer.run_epoch(&mut layer, &train, None).unwrap();
    let checkpoint = trainer.checkpoint(&layer);
    let mut other = OptLayer::new(davis_yin::<f64>(), forward).unwrap();
    let before = params(&other);
    let Err(error) = Trainer::resume(checkpoint, config(), &mut other, train.len()) else {
        panic!("a Davis-Yin layer resumed a proximal-gradient checkpoint");
    };
    let message = error.to_string();
    assert!(message.contains("splitting"), "{message}");
    assert!(message.contains("Davis-Yin"), "{message}");
    assert!(message.contains("proximal"), "{message}");
    assert!(params(&other) == before, "a rejected resume changed the layer");
}
