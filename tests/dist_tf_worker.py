"""The TF side of the 2-replica equivalence test: ``python THIS OUT``; with ``--train SPEC``,
then the 2-replica legs of the training test (``run_legs``, ``tests/dist_cases.py``):
``tf_impl``'s CLI with ``--strategy mirrored --cpu-devices 2``, on the logical CPUs set here.

Splits the CPU into 2 logical devices, then runs each case's step under ``MirroredStrategy``
with 2 replicas (each taking its half of the batch) inside ``tf_impl.train.compile_step``, and
writes ``OUT/<case>-dist.npz``: loss, gradients (replica 0's, after the mean over replicas) and
the exported state after. :func:`write_single` (the test calls it in its own process, which
needs no logical devices) writes the same step in one replica on the whole batch,
``OUT/<case>-single.npz``.
"""

import contextlib
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from dist_cases import (  # noqa: E402
    CASES,
    KEY_MOMENTUM,
    LR,
    MOMENTUM,
    STEPS_DONE,
    WEIGHT_DECAY,
    WORLD,
    case_kwargs,
    projections,
    run_legs,
    views,
)

from tf_impl.distributed import (  # noqa: E402
    DISTRIBUTED,
    convert_sync_batchnorm,
    local_rows,
    make_strategy,
    nt_xent_across_ranks,
)
from tf_impl.moco import MoCo  # noqa: E402
from tf_impl.optim import SGD  # noqa: E402
from tf_impl.simclr import SimCLR  # noqa: E402
from tf_impl.train import compile_step  # noqa: E402
from tf_impl.weights import entries, export_weights  # noqa: E402


def one_step(case: str, strategy) -> dict:
    method, kw, sync = case_kwargs(case, "single" if strategy is None else "dist")
    scope = strategy.scope() if strategy else contextlib.nullcontext()
    with scope:
        tf.keras.utils.set_random_seed(0)
        one = SimCLR if method == "simclr" else MoCo
        model = (one if strategy is None else DISTRIBUTED[method])(**kw)
        if sync:
            convert_sync_batchnorm(model)
        opt = SGD(LR, MOMENTUM, WEIGHT_DECAY)
        # the training step, also returning the gradients it applied (replica 0's, after the mean)
        step = compile_step(model, opt, strategy=strategy, return_gradients=True)
        net = model.net if method == "simclr" else model.encoder_q
        variables = net.trainable_weights

    x1, x2 = (tf.constant(x) for x in views(case))
    loss, grads = step(x1, x2, tf.constant([0, 7], tf.int32), tf.constant(KEY_MOMENTUM, tf.float64))
    names = {v.path: n for n, v in entries(model)}
    out = {"loss": loss.numpy()}
    for v, g in zip(variables, grads, strict=True):
        out[f"grad/{names[v.path]}"] = g.numpy()  # TF's layout is the canonical one
    out.update({f"after/{n}": v for n, v in export_weights(model).items()})
    return out


def shards(strategy) -> dict:
    """Each replica's gathered NT-Xent on its rows of fixed projections, and its rows' gradient."""
    z1g, z2g = (tf.constant(z) for z in projections())

    @tf.function
    def run():
        def replica():
            z1, z2 = local_rows(z1g), local_rows(z2g)
            with tf.GradientTape() as tape:
                tape.watch([z1, z2])
                loss = nt_xent_across_ranks(z1, z2, 0.5)
            dz1, dz2 = tape.gradient(loss, [z1, z2])
            return loss, dz1, dz2

        return strategy.run(replica)

    loss, dz1, dz2 = (strategy.experimental_local_results(t) for t in run())
    return {
        "losses": np.array([float(v) for v in loss]),
        "dz1": np.concatenate([v.numpy() for v in dz1]),
        "dz2": np.concatenate([v.numpy() for v in dz2]),
    }


def write_single(out: Path) -> None:
    """Every case's step in one replica on the whole batch, written to ``out/<case>-single.npz``."""
    for case in sorted(CASES):
        np.savez(out / f"{case}-single.npz", **one_step(case, None))


def main() -> int:
    out = Path(sys.argv[1])
    strategy = make_strategy("mirrored", cpu_devices=WORLD)
    assert strategy.num_replicas_in_sync == WORLD, strategy.num_replicas_in_sync
    for case in sorted(CASES):
        np.savez(out / f"{case}-dist.npz", **one_step(case, strategy))
    np.savez(out / "shards.npz", **shards(strategy))
    (out / STEPS_DONE).touch()
    if "--train" in sys.argv:
        from tf_impl.__main__ import main as cli

        def new_keys():
            """Each leg's MirroredStrategy gets collective keys of its own, as TensorFlow's
            tests do for several strategies in one process (the same keys with another
            collective's type or dtype abort the step)."""
            tf.distribute.MirroredStrategy._collective_key_base += 100_000

        return run_legs(cli, out, sys.argv[sys.argv.index("--train") + 1], before=new_keys)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
