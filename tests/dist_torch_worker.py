"""One torch process of the 2-process equivalence test: ``torchrun --nproc_per_node 2 THIS OUT``,
and with ``--train SPEC`` then the 2-process legs of the training test (``run_legs``,
``tests/dist_cases.py``): ``torch_impl``'s CLI in each rank, as ``torchrun -m torch_impl`` runs it.

Also ``python THIS OUT --single`` (or :func:`write_single` in the test's process): the same step
in one process on the whole batch. Each run writes ``OUT/<case>.npz`` (rank 0): loss (the mean
over ranks), DDP-averaged gradients and the whole exported state after the step, by canonical
name.
"""

import sys
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from dist_cases import (  # noqa: E402
    CASES,
    KEY_MOMENTUM,
    LR,
    MOMENTUM,
    SHUFFLE_SEED,
    STEPS_DONE,
    WEIGHT_DECAY,
    case_kwargs,
    local,
    projections,
    run_legs,
    views,
)

from shared.parity.weights import to_canonical  # noqa: E402
from torch_impl.distributed import (  # noqa: E402
    DISTRIBUTED,
    concat_all_gather,
    convert_sync_batchnorm,
    init_from_env,
    nt_xent_across_ranks,
)
from torch_impl.moco import MoCo  # noqa: E402
from torch_impl.simclr import SimCLR  # noqa: E402
from torch_impl.weights import entries, export_weights  # noqa: E402


def one_step(case: str, single: bool, rank: int) -> dict:
    method, kw, sync = case_kwargs(case, "single" if single else "dist")
    torch.manual_seed(0)
    if not single:
        init_from_env(torch.device("cpu"))
    one = SimCLR if method == "simclr" else MoCo
    model = (one if single else DISTRIBUTED[method])(**kw)
    if sync:
        convert_sync_batchnorm(model)
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    x1, x2 = views(case)
    if not single:
        x1, x2 = local(x1, rank), local(x2, rank)
    a, b = (torch.from_numpy(x).permute(0, 3, 1, 2).contiguous() for x in (x1, x2))
    torch.manual_seed(SHUFFLE_SEED)
    if method == "moco":
        model.key_momentum = KEY_MOMENTUM
    loss = model.train_step(a, b, opt)
    if not single:
        dist.all_reduce(loss)
        loss /= dist.get_world_size()
    grads = {
        f"grad/{n}": to_canonical(k, r, t.grad.numpy(), "torch")
        for n, k, r, t in entries(model)
        if t.grad is not None
    }
    after = {f"after/{n}": v for n, v in export_weights(model).items()}
    return {"loss": loss.numpy(), **grads, **after}


def shards(rank: int) -> dict:
    """Each rank's gathered NT-Xent on its rows of fixed projections, and its rows' gradient."""
    z1, z2 = (torch.from_numpy(local(z, rank)).requires_grad_() for z in projections())
    loss = nt_xent_across_ranks(z1, z2, 0.5)
    loss.backward()
    return {
        "losses": concat_all_gather(loss.detach().reshape(1)).numpy(),
        "dz1": concat_all_gather(z1.grad).numpy(),
        "dz2": concat_all_gather(z2.grad).numpy(),
    }


def write_single(out: Path) -> None:
    """Every case's one-process step on the whole batch, written to ``out/<case>.npz``."""
    for case in sorted(CASES):
        np.savez(out / f"{case}.npz", **one_step(case, True, 0))


def main() -> int:
    out, single = Path(sys.argv[1]), "--single" in sys.argv
    if single:
        write_single(out)
        return 0
    d = init_from_env(torch.device("cpu"))
    for case in sorted(CASES):
        res = one_step(case, False, d.rank)
        if d.is_main:
            np.savez(out / f"{case}.npz", **res)
    res = shards(d.rank)
    if d.is_main:
        np.savez(out / "shards.npz", **res)
        (out / STEPS_DONE).touch()
    code = 0
    if "--train" in sys.argv:
        from torch_impl.__main__ import main as cli

        # The ranks keep this process group for both legs: train() would end each leg by
        # destroying it, and a new group in the same processes reuses the old one's keys in
        # torchrun's store (gloo then dials the old group's closed ports).
        destroy, dist.destroy_process_group = dist.destroy_process_group, lambda *a, **k: None
        try:
            code = run_legs(cli, out, sys.argv[sys.argv.index("--train") + 1], d.is_main)
        finally:
            dist.destroy_process_group = destroy
    if dist.is_initialized():
        dist.destroy_process_group()
    return code


if __name__ == "__main__":
    raise SystemExit(main())
