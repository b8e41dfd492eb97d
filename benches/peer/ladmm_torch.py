"""Linearized ADMM for min ‖Θx‖₁ s.t. Ax = d in PyTorch, timed the way
`cargo bench --bench peer` times optlayer, on the problem that bench writes.

The iteration, the step sizes and the training step are those of optlayer's
`LinearizedAdmm` with the blocks (Θ, ‖·‖₁) and (A, indicator of {d}):

    v  = p + λ(ν + α(Θx − p)),  p⁺ = soft-threshold(v, λ),  ν⁺ = ν + α(Θx − p⁺)
    μ⁺ = μ + α(Ax − d)
    x⁺ = x − β Θᵀ(2ν⁺ − ν) − β Aᵀ(2μ⁺ − μ)

A training step runs the forward iteration without recording (torch.no_grad),
then one recorded step from the fixed point, the mean squared error per entry,
backward, torch.optim.Adam, Θ rescaled to unit spectral norm, and β lowered to
0.99 / (α ‖[Θ; A]‖₂²) when the step condition needs it; both norms come from
warm-started power iterations, as in optlayer.

Usage (the bench calls the second; see docs/benchmarks.md):
    python3 ladmm_torch.py PROBLEM_DIR --threads T
    python3 ladmm_torch.py PROBLEM_DIR --threads T --serve
    python3 ladmm_torch.py --train RUN_DIR --threads T [--precision f64]

The first prints one JSON object with the median seconds of each
measurement. The second replies to one measurement request per line (see
`serve`). The third trains Θ on the data of a finished sparse_inverse run,
with its settings, and prints the train and test MSE and the elapsed time
after each epoch.
Dependencies: pip install torch numpy.
"""

import argparse
import json
import os
import sys
import time

import numpy as np
import torch

ROUNDS = 15
LONG_ROUNDS = 5
ROUND_TIME = 0.04


def median_seconds(call):
    """Median over rounds of the seconds per call; a round repeats the call
    until ROUND_TIME has passed, so short calls are averaged within a round."""
    start = time.perf_counter()
    call()
    first = time.perf_counter() - start
    warm = time.perf_counter()
    while time.perf_counter() - warm < ROUND_TIME:
        call()
    rounds = ROUNDS if first < 0.1 else LONG_ROUNDS
    results = []
    for _ in range(rounds):
        start = time.perf_counter()
        calls = 0
        while True:
            call()
            calls += 1
            elapsed = time.perf_counter() - start
            if elapsed >= ROUND_TIME:
                break
        results.append(elapsed / calls)
    results.sort()
    return results[len(results) // 2]


def soft_threshold(v, t):
    return torch.sign(v) * torch.clamp(v.abs() - t, min=0.0)


class Ladmm:
    def __init__(self, theta, a, alpha, beta, lam):
        self.theta = theta
        self.a = a
        self.alpha = alpha
        self.beta = beta
        self.lam = lam
        self.theta_vector = None
        self.stacked_vector = None

    def step(self, state, d, theta=None):
        theta = self.theta if theta is None else theta
        x, p, nu, mu = state
        alpha, beta, lam = self.alpha, self.beta, self.lam
        kx = theta @ x
        v = p + lam * (nu + alpha * (kx - p))
        p_next = soft_threshold(v, lam)
        nu_next = nu + alpha * (kx - p_next)
        mu_next = mu + alpha * (self.a @ x - d)
        x_next = x - beta * (theta.T @ (2.0 * nu_next - nu)) - beta * (self.a.T @ (2.0 * mu_next - mu))
        return (x_next, p_next, nu_next, mu_next)

    def zero_state(self, batch):
        n, m = self.theta.shape[0], self.a.shape[0]
        dtype = self.theta.dtype
        return (
            torch.zeros(n, batch, dtype=dtype),
            torch.zeros(n, batch, dtype=dtype),
            torch.zeros(n, batch, dtype=dtype),
            torch.zeros(m, batch, dtype=dtype),
        )

    def forward(self, d, iters):
        state = self.zero_state(d.shape[1])
        with torch.no_grad():
            for _ in range(iters):
                state = self.step(state, d)
        return state


def power_iteration(apply, apply_t, start, max_iters=300, rel_tol=1e-9):
    """Largest singular value of a linear map, from a starting vector."""
    v = start / start.norm()
    sigma = 0.0
    for _ in range(max_iters):
        w = apply_t(apply(v))
        norm = w.norm()
        if norm == 0:
            return 0.0, v
        v = w / norm
        new_sigma = float(norm.sqrt())
        if abs(new_sigma - sigma) <= rel_tol * new_sigma:
            sigma = new_sigma
            break
        sigma = new_sigma
    return sigma, v


def refresh(model):
    """Rescales Θ to unit spectral norm and lowers β if the step condition needs it."""
    theta = model.theta
    n = theta.shape[1]
    start = model.theta_vector if model.theta_vector is not None else torch.ones(n, 1, dtype=theta.dtype)
    norm, model.theta_vector = power_iteration(lambda v: theta @ v, lambda w: theta.T @ w, start)
    if norm > 0:
        theta.div_(norm)
    start = model.stacked_vector if model.stacked_vector is not None else torch.ones(n, 1, dtype=theta.dtype)
    stacked, model.stacked_vector = power_iteration(
        lambda v: torch.cat([theta @ v, model.a @ v]),
        lambda w: theta.T @ w[:n] + model.a.T @ w[n:],
        start,
    )
    if model.alpha * model.beta * stacked**2 > 0.99:
        model.beta = 0.99 / (model.alpha * stacked**2)


def training_step(model, optimizer, d, target, iters):
    state = model.forward(d, iters)
    theta = model.theta
    x_next = model.step(state, d, theta)[0]
    loss = torch.mean((x_next - target) ** 2)
    optimizer.zero_grad(set_to_none=False)
    loss.backward()
    optimizer.step()
    with torch.no_grad():
        refresh(model)
    return float(loss.detach())


def train_run(args):
    """Trains Θ on the files of a sparse_inverse run folder, as the example
    does: Adam on shuffled batches, JFB gradients, and the test error at the
    training depth after every epoch. Prints one JSON object."""
    dtype = torch.float32 if args.precision == "f32" else torch.float64
    folder = args.train
    report = json.load(open(os.path.join(folder, "report.json")))
    config = report["config"]
    steps = report["steps"]
    a = load(os.path.join(folder, "A.npy"), dtype)
    theta = load(os.path.join(folder, "theta_init.npy"), dtype)
    train_d = load(os.path.join(folder, "train_d.npy"), dtype).T.contiguous()
    train_x = load(os.path.join(folder, "train_x.npy"), dtype).T.contiguous()
    test_d = load(os.path.join(folder, "test_d.npy"), dtype).T.contiguous()
    test_x = load(os.path.join(folder, "test_x.npy"), dtype).T.contiguous()
    # β as training starts: the example's rule from ‖A‖₂, lowered by the step condition.
    model = Ladmm(theta, a, steps["alpha"], 1.0 / (1.0 + steps["a_norm"]), steps["lambda"])
    with torch.no_grad():
        refresh(model)
    model.theta.requires_grad_(True)
    optimizer = torch.optim.Adam(
        [model.theta], lr=config["learning_rate"], weight_decay=config["weight_decay"]
    )
    generator = torch.Generator().manual_seed(config["seed"])
    batch, iters, samples = config["batch_size"], config["train_iters"], train_d.shape[1]
    epochs = []
    start = time.perf_counter()
    for epoch in range(1, config["epochs"] + 1):
        order = torch.randperm(samples, generator=generator)
        loss_sum = 0.0
        for first in range(0, samples, batch):
            index = order[first : first + batch]
            d = train_d[:, index].contiguous()
            target = train_x[:, index].contiguous()
            loss_sum += training_step(model, optimizer, d, target, iters) * d.shape[1]
        with torch.no_grad():
            test_mse = 0.0
            for first in range(0, test_d.shape[1], batch):
                d = test_d[:, first : first + batch]
                x = model.forward(d, iters)[0]
                test_mse += float(torch.sum((x - test_x[:, first : first + batch]) ** 2))
            test_mse /= test_x.numel()
        epochs.append(
            {
                "epoch": epoch,
                "train_mse": loss_sum / samples,
                "test_mse": test_mse,
                "seconds": time.perf_counter() - start,
            }
        )
        print(json.dumps(epochs[-1]), file=sys.stderr)
    json.dump({"torch": torch.__version__, "threads": torch.get_num_threads(), "epochs": epochs}, sys.stdout)
    print()


def load(path, dtype):
    return torch.from_numpy(np.load(path)).to(dtype)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("problem_dir", nargs="?")
    parser.add_argument(
        "--train",
        metavar="RUN_DIR",
        help="train on the files of a sparse_inverse run folder instead of timing steps",
    )
    parser.add_argument("--precision", choices=["f32", "f64"], default="f32")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batches", default="1,10,32,100,1000")
    parser.add_argument("--train-batches", default="1,10,32,100,1000")
    parser.add_argument("--train-iters", type=int, default=400)
    parser.add_argument(
        "--serve",
        action="store_true",
        help="reply to timing requests from standard input (see serve)",
    )
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    if args.train:
        train_run(args)
        return
    problem = Problem(args.problem_dir)
    if args.serve:
        serve(problem, args.train_iters)
        return
    results = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "step": {},
        "training_step": {},
    }
    for name in ["f32", "f64"]:
        results["step"][name] = {}
        results["training_step"][name] = {}
        for batch in [int(b) for b in args.batches.split(",") if b]:
            results["step"][name][str(batch)] = time_step(problem, name, batch)
        for batch in [int(b) for b in args.train_batches.split(",") if b]:
            results["training_step"][name][str(batch)] = time_training_step(
                problem, name, batch, args.train_iters
            )
    results["check"] = problem.check(args.train_iters)
    json.dump(results, sys.stdout)
    print()


DTYPES = {"f32": torch.float32, "f64": torch.float64}


class Problem:
    """The files that `cargo bench --bench peer` writes, loaded once per precision."""

    def __init__(self, directory):
        self.directory = directory
        with open(os.path.join(directory, "steps.json")) as f:
            self.steps = json.load(f)
        self.loaded = {}

    def tensors(self, name):
        """Returns Θ, A, the data and the targets in the precision `name`,
        with samples as columns."""
        if name not in self.loaded:
            dtype = DTYPES[name]
            path = lambda file: os.path.join(self.directory, file)
            self.loaded[name] = (
                load(path("theta.npy"), dtype),
                load(path("A.npy"), dtype),
                # One sample per row in the file; columns are samples here.
                load(path("train_d.npy"), dtype).T.contiguous(),
                load(path("train_x.npy"), dtype).T.contiguous(),
            )
        return self.loaded[name]

    def model(self, name):
        theta0, a, _, _ = self.tensors(name)
        steps = self.steps
        return Ladmm(theta0.clone(), a, steps["alpha"], steps["beta"], steps["lambda"])

    def check(self, iters):
        """Returns the iterate after `iters` steps on the first 10 samples in
        f64, so that the bench can check that both sides run the same
        iteration."""
        d = self.tensors("f64")[2][:, :10].contiguous()
        x = self.model("f64").forward(d, iters)[0]
        return {"iters": iters, "x": x.T.tolist()}


def time_step(problem, name, batch):
    """Median seconds of one forward step from the state after 50 steps."""
    model = problem.model(name)
    d = problem.tensors(name)[2][:, :batch].contiguous()
    state = model.forward(d, 50)
    holder = [state]

    def one_step():
        with torch.no_grad():
            holder[0] = model.step(state, d)

    return median_seconds(one_step)


def time_training_step(problem, name, batch, iters):
    """Median seconds of one training step (see `training_step`)."""
    model = problem.model(name)
    model.theta.requires_grad_(True)
    optimizer = torch.optim.Adam([model.theta], lr=1e-6, weight_decay=1e-5)
    _, _, data, targets = problem.tensors(name)
    d = data[:, :batch].contiguous()
    target = targets[:, :batch].contiguous()
    return median_seconds(lambda: training_step(model, optimizer, d, target, iters))


def serve(problem, iters):
    """Replies to timing requests read from standard input, one per line,
    with one JSON line each, so that the bench can alternate its own measurements
    with these. The first line written names the torch version and the
    thread count. Requests: `step f32 32`, `training_step f64 1000`, `check`
    and `quit`."""
    print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads()}), flush=True)
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        if words[0] == "quit":
            break
        try:
            if words == ["check"]:
                reply = problem.check(iters)
            elif len(words) == 3 and words[0] in ("step", "training_step") and words[1] in DTYPES:
                try:
                    batch = int(words[2])
                except ValueError:
                    batch = 0
                samples = problem.tensors(words[1])[2].shape[1]
                if batch < 1:
                    reply = {"error": f"batch must be a positive integer, got {words[2]!r}"}
                elif batch > samples:
                    # Slicing would silently time all the samples, a smaller batch.
                    reply = {"error": f"batch {batch} is larger than the {samples} samples in train_d.npy"}
                elif words[0] == "step":
                    reply = {"seconds": time_step(problem, words[1], batch)}
                else:
                    reply = {"seconds": time_training_step(problem, words[1], batch, iters)}
            else:
                reply = {"error": f"unknown request {line.strip()!r}"}
        except Exception as error:
            # A failed measurement is reported, and the next request is served.
            reply = {"error": f"{type(error).__name__}: {error}"}
        print(json.dumps(reply), flush=True)


if __name__ == "__main__":
    main()
