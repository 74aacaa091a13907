"""``rosetta localise``: where a user's own torch module and Keras model disagree, and why.

    rosetta localise --torch my_models.py:make_torch --keras my_models.py:make_keras \\
        --input-shape 8,3,32,32 [--port torch-to-keras|keras-to-torch|none] \\
        [--dtype float64|float32] [--optimizer sgd|adam] [--lr LR] [--momentum MU] \\
        [--keras-optimizer aligned|stock] [--steps K] [--map NAMES.json] [--report PATH]

Each FACTORY (``FILE.py:NAME`` or ``package.module:NAME``) is called with no arguments and
returns the model (the Keras one under the ``--dtype`` policy). The parametric layers of the
two models, in the order they run, are paired by kind and weight shapes
(``shared.parity.pair``); the weights are ported; then every layer is run alone in both
frameworks on the input torch's layer saw, and compared: the input Keras's own forward pass
gave the layer, the forward output, the input and weight gradients, BatchNorm's running
statistics, one optimiser step; and last the two models' outputs. The first quantity over its
tolerance (``shared.parity.tolerances``) is named with the catalogue row whose NumPy
hypothesis reproduces it (``shared.parity.localise``, the same machinery as
``rosetta parity --localise``). ``--steps K`` then trains both for K steps and names the first
step that leaves the float32 drift envelope.

Exit status 0 when everything agrees; 1 with one line ``first difference: ...``; 2 with one
``error:`` line for bad input (a factory that cannot be imported or called, layers that cannot
be paired, an input shape a model rejects). Frameworks are imported inside the functions,
torch first.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from shared.apps.impl_cli import Parser
from shared.parity.localise import Report, explain, localise
from shared.parity.pair import PairError, load_name_map, match_layers

__all__ = [
    "PairReport",
    "first_difference",
    "follow_steps",
    "load_factory",
    "localise_pair",
    "main",
    "report_markdown",
    "write_report",
]

PORTS = ("torch-to-keras", "keras-to-torch", "none")


@dataclass
class PairReport:
    """A localiser :class:`~shared.parity.localise.Report` of two user models, with the two
    frameworks' layer names (``names``: ``{torch name: keras name}``) and the dtype."""

    report: Report
    names: dict
    dtype: str
    steps: dict | None = field(default=None)
    per_layer: dict = field(
        default_factory=dict
    )  # {layer: [catalogue rows]} of its own first failure

    @property
    def passed(self) -> bool:
        return self.report.passed and (self.steps is None or self.steps["first"] is None)


def _frameworks():
    """torch, then TensorFlow (the import order this project needs), and the two pair modules."""
    import torch  # noqa: F401
    import torchvision  # noqa: F401

    from tf_impl import pair as kp
    from torch_impl import pair as tp

    return tp, kp


def _to_keras_input(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1)) if x.ndim == 4 else x


def _discover(side: str, fn, model, x):
    """``discover`` of one side; an input the model rejects (torch: a ``RuntimeError`` such as
    a shape mismatch; Keras: a ``ValueError`` of its input spec) is bad input."""
    rejects = RuntimeError if side == "torch" else ValueError
    try:
        return fn(model, x)
    except rejects as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise PairError(
            f"--input-shape: the {side} model rejects an input of shape {list(x.shape)}: {first}"
        ) from e


def _dtype_of(tp, kp, torch_model, keras_model) -> str:
    t = str(next(torch_model.parameters()).dtype).replace("torch.", "")
    k = str(keras_model.weights[0].dtype) if keras_model.weights else keras_model.compute_dtype
    if t != k:
        raise PairError(f"--dtype: the torch model is {t} but the keras model is {k}")
    return t


def _port(tp, kp, t, k, pairs, port: str) -> None:
    """Copy the weights of each pair, torch to Keras or back (canonical layout, bit-exact)."""
    t_layers, k_layers = [a for a, _ in pairs], [b for _, b in pairs]
    if port == "torch-to-keras":
        w = tp.read_weights(t[1], t_layers)
        kp.write_weights(k[1], k_layers, {b.name: w[a.name] for a, b in pairs})
    elif port == "keras-to-torch":
        w = kp.read_weights(k[1], k_layers)
        tp.write_weights(t[1], t_layers, {a.name: w[b.name] for a, b in pairs})


def _records(tp, pairs, t, k, seed: int) -> tuple[dict, dict, dict]:
    """The localiser's records (torch's captured inputs, canonical) and each side's "input":
    torch's (padded as torch pads, where the Keras conv pads nothing) and Keras's own."""
    from tf_impl.pair import torch_padding

    # the gradients' own stream: a batch drawn from `seed` too would equal them
    rng, records, t_in, k_in = np.random.default_rng([seed, 1]), {}, {}, {}
    weights = tp.read_weights(t[1], [a for a, _ in pairs])
    prev, folded = None, "linear"
    for a, b in pairs:
        x_raw, y_raw = t[2][a.name]
        x, y = tp.to_canonical_act(a.kind, x_raw), tp.to_canonical_act(a.kind, y_raw)
        config = {**a.config, "keras": b.config, "folded": folded}
        records[a.name] = {
            "kind": a.kind,
            "config": config,
            "x": x,
            "gy": rng.standard_normal(y.shape),
            "before": weights[a.name],
            "prev": prev,
        }
        t_in[a.name] = x
        if a.kind in ("conv", "dwconv") and b.config.get("keras_padding") == "valid":
            ph, pw = torch_padding(a.config, a.shapes["kernel"])
            t_in[a.name] = np.pad(x, ((0, 0), (ph, ph), (pw, pw), (0, 0)))
        k_in[a.name] = k[2][b.name][0]
        prev, folded = y, b.config.get("activation", "linear")
    out = tp.to_canonical_act("conv", t[3])
    records["output"] = {
        "kind": "output",
        "config": {"folded": folded},
        "x": out,
        "gy": None,
        "before": {},
        "prev": prev,
    }
    return records, t_in, k_in


def _layer_outputs(tp, kp, pairs, t, k, records, t_in, k_in) -> tuple[dict, dict]:
    """Each layer alone in both frameworks; "input" first, then the layer's own quantities."""
    torch_out, keras_out = {}, {}
    for a, b in pairs:
        rec, m = records[a.name], t[1][a.name]
        roles = tp.module_roles(a.kind, m)
        with _train_mode(m):
            ran = tp.run_layer(a.kind, m, roles, rec["x"], rec["gy"], getattr(m, "groups", 1))
        torch_out[a.name] = {"input": t_in[a.name], **ran}
        ran = kp.run_layer(a.kind, k[1][b.name], rec["x"], rec["gy"], a.config)
        keras_out[a.name] = {"input": k_in[a.name], **ran}
    torch_out["output"] = {"forward": records["output"]["x"]}
    keras_out["output"] = {"forward": np.asarray(k[3])}
    return torch_out, keras_out


class _train_mode:
    """The module in training mode, its state restored afterwards (BN statistics included)."""

    def __init__(self, m):
        self.m = m

    def __enter__(self):
        self.state = {n: v.detach().clone() for n, v in self.m.state_dict().items()}
        self.was = self.m.training
        self.m.train()

    def __exit__(self, *exc):
        self.m.train(self.was)
        self.m.load_state_dict(self.state)


def _steps_of(tp, kp, pairs, t, k, torch_out, keras_out, opt: dict) -> dict:
    """One optimiser step in each framework, both fed torch's weight gradients; merged into the
    layers' outputs as ``slot/<role>/<slot>`` and ``step/<role>``. Returns the gradients fed."""
    grads = {
        a.name: {q[5:]: g for q, g in torch_out[a.name].items() if q.startswith("grad/")}
        for a, _ in pairs
    }
    for g in grads.values():
        g.pop("input", None)
    settings = {
        "optimizer": opt["optimizer"],
        "lr": opt["lr"],
        "momentum": opt["momentum"],
    }
    t_layers, k_layers = [a for a, _ in pairs], [b for _, b in pairs]
    pt = tp.optimizer_step(t[1], t_layers, grads, **settings)
    kg = {b.name: grads[a.name] for a, b in pairs}
    ks = kp.optimizer_step(k[1], k_layers, kg, **settings, stock=opt["stock"])
    for a, b in pairs:
        torch_out[a.name].update(pt[a.name])
        keras_out[a.name].update(ks[b.name])
    return grads


def localise_pair(
    torch_model,
    keras_model,
    x: np.ndarray,
    *,
    port: str = "torch-to-keras",
    optimizer: str = "sgd",
    lr: float | None = None,
    momentum: float = 0.9,
    keras_optimizer: str = "aligned",
    name_map: dict | None = None,
    seed: int = 0,
) -> PairReport:
    """Port, then localise the first disagreement of a torch module and a Keras model.

    Args:
        torch_model: a ``torch.nn.Module``.
        keras_model: a Keras model (functional, sequential or subclassed) of the same dtype.
        x: the input batch in torch's layout, e.g. (N, C, H, W); Keras gets it channels-last.
        port: "torch-to-keras", "keras-to-torch" or "none" (compare the weights as they are).
        optimizer: "sgd" (with ``momentum``) or "adam"; ``lr`` defaults to 0.1 and 1e-3.
        keras_optimizer: "aligned" (``tf_impl.optim``: torch's updates) or "stock" (Keras's).
        name_map: ``{torch layer name: keras layer name}`` instead of pairing by position.
        seed: seeds the upstream gradients.

    Returns:
        A :class:`PairReport`; ``report.rows`` has every quantity of every layer.

    Raises:
        PairError: the layers cannot be paired, or a model rejects ``x``.
    """
    tp, kp = _frameworks()
    if port not in PORTS:
        raise PairError(f"--port: expected one of {', '.join(PORTS)}, got {port!r}")
    dtype = _dtype_of(tp, kp, torch_model, keras_model)
    xk = _to_keras_input(x)
    t = _discover("torch", tp.discover, torch_model, x)
    k = _discover("keras", kp.discover, keras_model, xk)
    pairs = match_layers(t[0], k[0], name_map)
    _port(tp, kp, t, k, pairs, port)
    if port == "torch-to-keras":  # the inputs each layer sees in the ported model
        k = kp.discover(keras_model, xk)
    elif port == "keras-to-torch":
        t = tp.discover(torch_model, x)
    records, t_in, k_in = _records(tp, pairs, t, k, seed)
    torch_out, keras_out = _layer_outputs(tp, kp, pairs, t, k, records, t_in, k_in)
    lr = lr if lr is not None else (0.1 if optimizer == "sgd" else 1e-3)
    opt = {"optimizer": optimizer, "lr": lr, "momentum": momentum}
    grads = _steps_of(
        tp, kp, pairs, t, k, torch_out, keras_out, {**opt, "stock": keras_optimizer == "stock"}
    )
    keras_out = {a: keras_out[a] for a in torch_out}
    report = localise(records, torch_out, keras_out, dtype, {**opt, "grads": grads})
    names = {a.name: b.name for a, b in pairs}
    result = PairReport(report, {**names, "output": "output"}, dtype)
    result.per_layer = _explain_each(records, keras_out, report, dtype, {**opt, "grads": grads})
    return result


def _explain_each(records, keras_out, report, dtype: str, settings: dict) -> dict:
    """For every layer whose own quantities fail (fed torch's input, so a difference upstream
    does not count), the catalogue rows that reproduce its first failing one."""
    out: dict = {}
    for layer, quantity, r in report.rows:
        if r.passed or quantity == "input" or layer in out:
            continue
        layer_settings = {**settings, "grads": settings["grads"].get(layer, {})}
        found, _ = explain(
            records[layer], quantity, keras_out[layer][quantity], dtype, layer_settings
        )
        out[layer] = [(name, i) for name, i, _ in found]
    return out


def first_difference(result: PairReport) -> str:
    """The one line of the verdict: ``first difference: ...`` or ``ok: ...``."""
    rep = result.report
    if result.steps is not None and result.steps["first"] is not None:
        return result.steps["line"]  # over training, with the localiser at that step
    if rep.first is None:
        n = len({layer for layer, _, _ in rep.rows})
        tail = f"; {result.steps['line']}" if result.steps else ""
        return (
            f"ok: {len(rep.rows)} quantities of {n} layers within tolerance ({result.dtype}){tail}"
        )
    layer, quantity, r = rep.first
    where = f"{layer} (torch) / {result.names.get(layer, layer)} (keras)"
    size = (
        f"max abs {r.max_abs:.3g}, {r.worst_margin:.3g}x its tolerance ({r.rtol:.1e} rel + "
        f"{r.atol * r.scale:.2g} abs)"
    )
    if r.reason.startswith("shape mismatch"):
        size = r.reason
    if rep.explained:
        why = "; ".join(f"catalogue row {i}: {n}" for n, i, _ in rep.explained)
    else:
        why = f"no catalogue row reproduces it (tried: {', '.join(rep.probed) or 'none applies'})"
    return f"first difference: {where} {quantity}: {size}; {why}"


def _import_module(flag: str, where: str):
    """``FILE.py`` (the user's own code, run as a module) or an importable module name."""
    try:
        if where.endswith(".py") or Path(where).is_file():
            path = Path(where)
            if not path.is_file():
                raise PairError(
                    f"{flag}: expected FILE.py:FACTORY or MODULE:FACTORY; no file {where!r}"
                )
            spec = importlib.util.spec_from_file_location(f"rosetta_user_{path.stem}", path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            return module
        return importlib.import_module(where)
    except ImportError as e:
        raise PairError(f"{flag}: cannot import {where!r}: {e}") from e
    except SyntaxError as e:
        raise PairError(f"{flag}: {where!r} is not valid Python: {e}") from e


def load_factory(flag: str, spec: str):
    """The callable that ``FILE.py:NAME`` or ``package.module:NAME`` names.

    Raises:
        PairError: no ``:``, a module that cannot be imported, or no such callable in it.
    """
    where, sep, name = spec.rpartition(":")
    if not sep or not where or not name:
        raise PairError(f"{flag}: expected FILE.py:FACTORY or MODULE:FACTORY, got {spec!r}")
    factory = getattr(_import_module(flag, where), name, None)
    if not callable(factory):
        raise PairError(f"{flag}: {where!r} has no callable {name!r}")
    return factory


def _build(flag: str, spec: str, dtype: str):
    """Call the factory: torch's model cast to ``dtype``, Keras's built under its policy."""
    tp, kp = _frameworks()
    import keras
    import torch

    factory = load_factory(flag, spec)
    policy, floatx = keras.config.dtype_policy(), keras.config.floatx()
    try:
        if flag == "--keras":  # the layers' policy, and keras.Input's default dtype
            keras.config.set_dtype_policy(dtype)
            keras.config.set_floatx(dtype)
        model = factory()
    except Exception as e:  # the user's factory: any failure is bad input, traceback kept
        raise PairError(f"{flag}: the factory {spec!r} raised {type(e).__name__}: {e}") from e
    finally:
        keras.config.set_dtype_policy(policy)
        keras.config.set_floatx(floatx)
    if flag == "--torch":
        if not isinstance(model, torch.nn.Module):
            raise PairError(
                f"--torch: expected the factory to return a torch.nn.Module, got {type(model).__name__}"
            )
        return model.to(getattr(torch, dtype))
    if not isinstance(model, keras.layers.Layer):
        raise PairError(
            f"--keras: expected the factory to return a Keras model, got {type(model).__name__}"
        )
    return model


def _shape(text: str) -> tuple:
    try:
        shape = tuple(int(s) for s in text.split(","))
    except ValueError:
        shape = ()
    if not shape or min(shape) < 1:
        raise PairError(
            f"--input-shape: expected positive integers separated by commas (torch's layout, "
            f"e.g. 8,3,32,32), got {text!r}"
        )
    return shape


def _parser() -> Parser:
    ap = Parser(
        prog="rosetta localise",
        description="Pair, port and compare your own torch module and Keras model layer by "
        "layer; name the first difference and the catalogue row that explains it "
        "(docs/localise.md).",
    )
    ap.add_argument(
        "--torch",
        required=True,
        metavar="FILE_OR_MODULE:FACTORY",
        help="a function of no arguments returning the torch.nn.Module",
    )
    ap.add_argument(
        "--keras",
        required=True,
        metavar="FILE_OR_MODULE:FACTORY",
        help="a function of no arguments returning the Keras model (built under --dtype)",
    )
    ap.add_argument("--input-shape", required=True, metavar="N,C,H,W", help="torch's layout")
    ap.add_argument("--port", default="torch-to-keras", choices=PORTS)
    ap.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    ap.add_argument("--optimizer", default="sgd", choices=["sgd", "adam"])
    ap.add_argument("--lr", type=float, default=None, help="default 0.1 (sgd), 1e-3 (adam)")
    ap.add_argument("--momentum", type=float, default=0.9)
    ap.add_argument(
        "--keras-optimizer",
        default="aligned",
        choices=["aligned", "stock"],
        help="Keras side: tf_impl.optim (torch's updates) or keras.optimizers' own",
    )
    ap.add_argument("--steps", type=int, default=0, help="then train K steps in both")
    ap.add_argument("--map", metavar="FILE", help="JSON {torch layer name: keras layer name}")
    ap.add_argument("--report", metavar="PATH", help="write PATH (Markdown) and PATH.json")
    ap.add_argument(
        "--token-ids",
        type=int,
        metavar="V",
        help="the batch is integers in [0, V) (a model that starts with an Embedding)",
    )
    ap.add_argument("--seed", type=int, default=0, help="seeds the batch and the gradients")
    return ap


def main(argv=None) -> int:
    """``rosetta localise``: 0 agree, 1 ``first difference: ...``, 2 bad input (raised as a
    ``PairError``, printed by ``shared.apps.impl_cli.run_guarded`` as one line)."""
    args = _parser().parse_args(argv)
    shape = _shape(args.input_shape)
    if args.token_ids is not None and args.token_ids < 1:
        raise PairError(
            f"--token-ids: expected a vocabulary size of 1 or more, got {args.token_ids}"
        )
    if args.steps < 0:
        raise PairError(f"--steps: expected 0 or more training steps, got {args.steps}")
    if args.steps and args.token_ids:
        raise PairError("--steps: trains on float batches; it cannot follow --token-ids")
    name_map = load_name_map(args.map) if args.map else None
    torch_model = _build("--torch", args.torch, args.dtype)
    keras_model = _build("--keras", args.keras, args.dtype)
    rng = np.random.default_rng(args.seed)
    x = rng.integers(0, args.token_ids, shape) if args.token_ids else rng.standard_normal(shape)
    kw = {
        "optimizer": args.optimizer,
        "lr": args.lr,
        "momentum": args.momentum,
        "keras_optimizer": args.keras_optimizer,
        "seed": args.seed,
    }
    try:
        result = localise_pair(torch_model, keras_model, x, port=args.port, name_map=name_map, **kw)
    except PairError as e:
        if getattr(e, "listing", None):
            print(e.listing)  # the finding: both sequences up to the first mismatch
        raise
    if args.steps:
        result.steps = follow_steps(
            torch_model, keras_model, x, args.steps, **kw, name_map=name_map
        )
    if args.report:
        write_report(result, args.report)
    print(first_difference(result))
    return 0 if result.passed else 1


def run(argv=None) -> int:
    """:func:`main` with the project's handling of bad input: one ``error:`` line, status 2."""
    from shared.apps.impl_cli import run_guarded

    return run_guarded(main, argv)


def _converted_variance(kv: list, start: np.ndarray, config: dict) -> list:
    """Keras's moving variance per step in torch's (unbiased) convention.

    With a = 1 - torch's momentum and r = n / (n - 1): Keras adds the biased batch variance,
    ``s_k = (kv_k - a kv_{k-1}) / (1 - a)``; torch the unbiased, so torch's store would be
    ``c_k = a c_{k-1} + r (kv_k - a kv_{k-1})``, from the same start.
    """
    a, n = 1 - config["momentum"], config["count"]
    r, out, c, prev = n / max(n - 1, 1), [], np.asarray(start, np.float64), start
    for v in kv:
        c = a * c + r * (np.asarray(v, np.float64) - a * np.asarray(prev, np.float64))
        out.append(c)
        prev = v
    return out


def _series(weights: list, layer: str, role: str) -> np.ndarray:
    return np.stack([np.asarray(w[layer][role], np.float64) for w in weights])


def _out_of_envelope(pairs, runs: dict, start: dict, dtype: str):
    """The first step (0-based) where Keras leaves the envelope, and the quantity (or None);
    and the largest ratio of a gap to its envelope over all steps and quantities."""
    from shared.parity.pair import drift_envelope
    from shared.parity.tolerances import tolerance

    tol = tolerance("param", dtype)
    (rl, rw), (tl, tw), (kl, kw) = runs["ref"], runs["torch"], runs["keras"]
    checks = [("loss", "", np.array(rl), np.array(tl), np.array(kl))]
    for a, b in pairs:
        for role in tw[0][a.name]:
            ref, t32 = _series(rw, a.name, role), _series(tw, a.name, role)
            k32 = [w[b.name][role] for w in kw]
            if role == "moving_variance":
                k32 = _converted_variance(k32, start[a.name][role], a.config)
            checks.append((role, a.name, ref, t32, np.stack(k32)))
    first, closest = None, 0.0
    for quantity, layer, ref, t32, k32 in checks:
        scale = np.abs(ref).reshape(len(ref), -1).max(1)
        env = drift_envelope(ref, t32, 0.0) + (tol.atol + tol.rtol) * scale
        gap = np.abs(k32 - t32).reshape(len(ref), -1).max(1)
        closest = max(closest, float((gap / env).max()))
        bad = np.nonzero(gap > env)[0]
        if bad.size and (first is None or bad[0] < first[0]):
            first = (int(bad[0]), quantity, layer, float(gap[bad[0]]), float(env[bad[0]]))
    return first, closest


def follow_steps(
    torch_model,
    keras_model,
    x: np.ndarray,
    steps: int,
    *,
    optimizer: str = "sgd",
    lr: float | None = None,
    momentum: float = 0.9,
    keras_optimizer: str = "aligned",
    seed: int = 0,
    name_map: dict | None = None,
) -> dict:
    """Train both models ``steps`` steps from the same (already ported) weights on the same
    seeded batches (MSE to seeded targets, ``shared.parity.pair.cosine_lr``), and compare each
    step's loss and weights with the drift envelope (``shared.parity.pair.drift_envelope``):
    twice torch's own float32 distance from a float64 copy of it, plus the table's ``param``
    tolerance. At the first step out of it, the per-layer localiser runs on that step's state.

    Returns:
        ``{"first": None or (step, quantity, layer, gap, envelope), "line", "losses", "local"}``.
    """
    tp, kp = _frameworks()
    lr = lr if lr is not None else (0.1 if optimizer == "sgd" else 1e-3)
    t, k = tp.discover(torch_model, x), kp.discover(keras_model, _to_keras_input(x))
    pairs = match_layers(t[0], k[0], name_map)
    rng = np.random.default_rng(seed + 1)
    batches = [rng.standard_normal(x.shape) for _ in range(steps)]
    targets = [rng.standard_normal(tuple(t[3].shape)) for _ in range(steps)]
    k_layers = [b for _, b in pairs]
    start = tp.read_weights(t[1], [a for a, _ in pairs])
    saved = kp.read_weights(k[1], k_layers)
    opt = {"optimizer": optimizer, "lr": lr, "momentum": momentum}
    runs = _train_all(torch_model, keras_model, k, pairs, (batches, targets), opt, keras_optimizer)
    dtype = str(next(torch_model.parameters()).dtype).replace("torch.", "")
    first, closest = _out_of_envelope(pairs, runs, start, dtype)
    losses = {n: r[0] for n, r in runs.items()}
    result = {"first": first, "closest": closest, "losses": losses, "local": None}
    if first is None:
        kp.write_weights(k[1], k_layers, saved)
        result["line"] = (
            f"{steps} training steps within the {dtype} drift envelope (the closest gap "
            f"{closest:.2g} of it)"
        )
        return result
    return _localise_step(
        result,
        torch_model,
        keras_model,
        pairs,
        runs,
        batches,
        start,
        **opt,
        steps=steps,
        keras_optimizer=keras_optimizer,
        name_map=name_map,
    )


def _train_all(torch_model, keras_model, k, pairs, data, opt: dict, keras_optimizer: str):
    """``{"ref": torch in float64, "torch": torch as it is, "keras"}``, each ``(losses,
    weights)`` of ``train_steps`` on ``data`` (batches, targets); the torch runs on copies."""
    import copy

    import torch

    tp, kp = _frameworks()
    batches, targets = data
    t_layers = [a for a, _ in pairs]
    runs = {}
    for name, dt in (("ref", torch.float64), ("torch", None)):
        model = copy.deepcopy(torch_model)
        model = model.to(dt) if dt is not None else model
        mods = dict(model.named_modules())
        runs[name] = tp.train_steps(model, mods, t_layers, batches, targets, **opt)
    kb = [_to_keras_input(b) for b in batches]
    kt = [_to_keras_input(y) for y in targets]
    stock = keras_optimizer == "stock"
    k_layers = [b for _, b in pairs]
    runs["keras"] = kp.train_steps(keras_model, k[1], k_layers, kb, kt, **opt, stock=stock)
    return runs


def _localise_step(result, torch_model, keras_model, pairs, runs, batches, start, **kw) -> dict:
    """The per-layer localiser at the first step out of the envelope, from torch's state
    before that step (ported to Keras), on that step's batch and learning rate."""
    from shared.parity.pair import cosine_lr
    from torch_impl import pair as tp

    step, quantity, layer, gap, env = result["first"]
    steps = kw.pop("steps")
    state = start if step == 0 else runs["torch"][1][step - 1]
    mods = dict(torch_model.named_modules())
    tp.write_weights(mods, [a for a, _ in pairs], state)
    kw["lr"] = cosine_lr(kw["lr"], step, steps)
    local = localise_pair(torch_model, keras_model, batches[step], **kw)
    result["local"] = local
    names = {a.name: b.name for a, b in pairs}
    where = f"{layer} (torch) / {names[layer]} (keras) {quantity}" if layer else "loss"
    result["line"] = (
        f"first difference: training step {step + 1} of {steps}: {where} differs by {gap:.3g}, "
        f"outside the drift envelope {env:.3g}; at that step: "
        + first_difference(local).removeprefix("first difference: ")
    )
    return result


def report_markdown(result: PairReport) -> str:
    """Every layer, both names: whether Keras's own forward pass fed it torch's input, and its
    own quantities (each run on torch's input): the first failing one, or the worst."""
    lines = [
        first_difference(result),
        "",
        "| # | torch | keras | its input in Keras's own pass | own quantities | first failing "
        "(or worst) | max abs | x its tolerance | own ok | looks like (catalogue row) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    layers: dict = {}
    for layer, quantity, r in result.report.rows:
        layers.setdefault(layer, []).append((quantity, r))
    for i, (layer, rows) in enumerate(layers.items()):
        own = [(q, r) for q, r in rows if q != "input"]
        inputs = [r for q, r in rows if q == "input"]
        given = "-" if not inputs else ("ok" if inputs[0].passed else _short(inputs[0]))
        bad = [(q, r) for q, r in own if not r.passed]
        q, r = bad[0] if bad else max(own, key=lambda qr: qr[1].worst_margin)
        lines.append(
            f"| {i} | {layer} | {result.names.get(layer, layer)} | {given} | {len(own)} | {q} | "
            f"{r.max_abs:.3g} | {r.worst_margin:.3g} | {'FAIL' if bad else 'ok'} | "
            f"{_rows_text(result.per_layer.get(layer)) if bad else ''} |"
        )
    return "\n".join(lines) + "\n"


def _rows_text(rows) -> str:
    if not rows:
        return "none reproduces it"
    return "; ".join(f"{name} ({i})" for name, i in rows)


def _short(r) -> str:
    """A failed row in a few words: its shape mismatch, or its largest difference."""
    if r.reason.startswith("shape mismatch"):
        return r.reason.replace("shape mismatch: expected", "shape").replace(", got", " vs")
    return f"differs by {r.max_abs:.3g}"


def write_report(result: PairReport, path: str) -> None:
    """``--report PATH``: the Markdown table at PATH, every row as JSON at PATH.json."""
    rows = []
    for layer, q, r in result.report.rows:
        row = r.as_dict()
        row["group"] = row.pop("quantity")  # the tolerance table's group
        rows.append({"layer": layer, "keras": result.names.get(layer, layer), "quantity": q, **row})
    doc = {
        "verdict": first_difference(result),
        "dtype": result.dtype,
        "rows": rows,
        "explained": {layer: [list(x) for x in rows] for layer, rows in result.per_layer.items()},
        "steps": None
        if result.steps is None
        else {k: result.steps[k] for k in ("first", "closest", "losses")},
    }
    try:
        Path(path).write_text(report_markdown(result))
        Path(f"{path}.json").write_text(json.dumps(doc, indent=1, default=float) + "\n")
    except OSError as e:
        raise PairError(f"--report: cannot write {path!r}: {e}") from e
