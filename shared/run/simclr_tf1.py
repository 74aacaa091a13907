"""google-research/simclr's TF1 checkpoints, every released variant, mapped onto canonical weights.

Framework-free, as ``shared.run.official`` (whose MoCo mapping ``rosetta import`` uses; this
module replaces its SimCLR one). What the official code writes (``resnet.py``, ``model.py``,
``model_util.py``, facts read in its public repository):

* The ResNet under ``base_model/`` with ``tf.layers`` auto-names in creation order
  (``conv2d``, ``conv2d_1``, ...; ``batch_normalization``, ...): ResNet-50, -101 or -152
  (blocks 3-4-6-3, 3-4-23-3, 3-8-36-3), width multiplier w (the stem has ``64 w`` filters), and
  with ``sk_ratio > 0`` ResNet-D's stem (three 3x3 convs, the first to ``32 w``), ResNet-D's
  shortcut (average pool, then a stride-1 1x1 conv) and ``sk_conv2d`` in place of each 3x3:
  a 3x3 conv to twice the filters + BN, a 1x1 conv to ``max(filters sk_ratio, 32)`` + BN and a
  1x1 conv back to twice the filters (no BN). A block creates its projection shortcut first.
* ``head_contrastive/nl_<j>/{dense, batch_normalization}``: the projection head, N layers of
  ``2048 w`` units but the last (``proj_out_dim``); dense without bias, BN with beta but on the
  last layer. The released v1 checkpoints have none (google-research/simclr's README).
* ``head_supervised/linear_layer/dense/{kernel, bias}``: the linear head. It reads
  ``hiddens_list[ft_proj_selector]`` of the projection head (0: h; j: layer j - 1's output
  after its ReLU): a pretrained checkpoint's linear-eval head reads h, the README's fine-tuning
  recipe sets ``--ft_proj_selector=1``. The checkpoint does not record which.
* ``ema_model/<name>``: a copy of the weights (EMA), read with ``weights="ema"``; optimiser slots
  (``/Momentum`` of LARS or momentum, Adam's), ``global_step``, ``.../ExponentialMovingAverage``
  shadows and ``memory`` variables are not weights of the network: skipped, and counted by kind.

Canonical layers: ``resnet50_samepool`` (and ``resnet50_cifar``) walk torchvision's order
(``shared.run.official.simclr_layers``); every other variant is ``simclr_r<d>_<w>x_sk<0|1>``
(``torch_impl.simclr_resnet``), whose walk is the official creation order: canonical
``conv<i>`` is ``conv2d_<i>``.
"""

from __future__ import annotations

import re

import numpy as np

from shared.parity.weights import WeightsError, canonical_name
from shared.run import official
from shared.run.encoders import SIMCLR_DEPTHS, SIMCLR_WIDTHS, simclr_encoder

__all__ = [
    "BLOCKS",
    "WEIGHTS",
    "official_layers",
    "select_weights",
    "simclr_config",
    "simclr_state",
    "skip_kind",
]

WEIGHTS = ("raw", "ema")
EMA_PREFIX = "ema_model/"
BLOCKS = {18: None, 34: None, 50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3),
          200: (3, 24, 36, 3)}  # fmt: skip  # resnet.py model_params (18, 34: residual blocks)
SK_RATIO, SK_MIN_DIM = 0.0625, 32
BN_ROLES = ("gamma", "beta", "moving_mean", "moving_variance")
KIND_EMA_COPY = "EMA copies (ema_model/...; --weights ema reads them)"
KIND_RAW = "raw weights (their ema_model/ copies read instead)"
_SUFFIXES = {
    "/ExponentialMovingAverage": "EMA shadows (ExponentialMovingAverage)",
    "/Momentum": "optimiser slots (Momentum / LARS momentum)",
    "/LARSOptimizer": "optimiser slots (Momentum / LARS momentum)",
    "/Adam": "optimiser slots (Adam)",
    "/Adam_1": "optimiser slots (Adam)",
}
_NAMES = {
    "global_step": "global_step",
    "beta1_power": "optimiser slots (Adam)",
    "beta2_power": "optimiser slots (Adam)",
}
_CONV = re.compile(r"base_model/conv2d(_\d+)?/kernel")


def skip_kind(name: str) -> str | None:
    """The kind of a checkpoint variable that is not a weight of the network, or None."""
    if name in _NAMES:
        return _NAMES[name]
    for suffix, kind in _SUFFIXES.items():
        if name.endswith(suffix):
            return kind
    if any(part.startswith("memory") for part in name.split("/")):
        return "memory variables"
    return None


def select_weights(variables: dict, weights: str = "raw") -> tuple[dict, dict, list]:
    """The network's variables of the chosen copy, under their names without ``ema_model/``.

    Returns:
        ``(chosen, skipped, raw_fallback)``: ``skipped`` counts by kind; ``raw_fallback`` the
        names read raw under ``weights="ema"`` because they have no ``ema_model/`` copy.

    Raises:
        WeightsError: ``weights`` not in ``WEIGHTS``, or ``"ema"`` with no ``ema_model/`` copy.
    """
    if weights not in WEIGHTS:
        raise WeightsError(f"weights: expected one of {WEIGHTS}, got {weights!r}")
    skipped: dict[str, int] = {}
    raw, ema = {}, {}
    for name, array in variables.items():
        kind = skip_kind(name)
        if kind:
            skipped[kind] = skipped.get(kind, 0) + 1
        elif name.startswith(EMA_PREFIX):
            ema[name[len(EMA_PREFIX) :]] = array
        else:
            raw[name] = array
    if weights == "raw":
        if ema:
            skipped[KIND_EMA_COPY] = len(ema)
        return raw, skipped, []
    if not ema:
        raise WeightsError(
            "checkpoint: --weights ema: no variable under ema_model/ (no EMA copy in this "
            "checkpoint); use --weights raw"
        )
    replaced = sum(n in ema for n in raw)
    if replaced:
        skipped[KIND_RAW] = replaced
    return {**raw, **ema}, skipped, sorted(n for n in raw if n not in ema)


def _scope(base: str, i: int) -> str:
    return f"base_model/{base}" + (f"_{i}" if i else "")


def official_layers(depth: int, width: int, sk: bool, cifar: bool = False) -> list[tuple]:
    """``(official scope, kind, shape)`` of the ResNet's conv (HWIO) and BN (C,) layers in
    ``resnet.py``'s creation order."""
    w, created = 64 * width, []

    def conv(k, cin, cout):
        created.append(("conv", (k, k, cin, cout)))
        if cout:  # every conv but sk_conv2d's mixing one is followed by a BN
            created.append(("bn", (cout,)))

    if sk:
        conv(3, 3, w // 2), conv(3, w // 2, w // 2), conv(3, w // 2, w)
    else:
        conv(3 if cifar else 7, 3, w)
    cin = w
    for g, n in enumerate(BLOCKS[depth]):
        f = w * 2**g
        for b in range(n):
            if b == 0:
                conv(1, cin, 4 * f)
            conv(1, cin, f)
            if sk:
                mid = max(int(f * SK_RATIO), SK_MIN_DIM)
                conv(3, f, 2 * f), conv(1, f, mid)
                created.append(("conv", (1, 1, mid, 2 * f)))  # the mixing conv: no BN
            else:
                conv(3, f, f)
            conv(1, f, 4 * f)
            cin = 4 * f
    counts, out = {"conv": 0, "bn": 0}, []
    for kind, shape in created:
        i = counts[kind]
        counts[kind] += 1
        out.append((_scope("conv2d" if kind == "conv" else "batch_normalization", i), kind, shape))
    return out


def _canonical(depth: int, width: int, sk: bool, cifar: bool) -> dict[str, str]:
    """Official scope -> canonical layer (``net/encoder/conv<i>``): torchvision's order for
    ResNet-50 1x without selective kernels (``resnet50_samepool``, ``resnet50_cifar``), the
    creation order otherwise."""
    if (depth, width, sk) == (50, 1, False):
        order = official.simclr_layers()
    else:
        order = official_layers(depth, width, sk, cifar)
    counts: dict[str, int] = {}
    out = {}
    for scope, kind, _ in order:
        i = counts[kind] = counts.get(kind, -1) + 1
        out[scope] = f"net/encoder/{kind}{i}"
    return out


def _count_variant(n: int, stem_k: int) -> tuple[int, bool]:
    """``(depth, sk)`` of a ResNet with ``n`` conv kernels (its stem's kernel ``stem_k``)."""
    for depth, blocks in BLOCKS.items():
        if blocks is None:  # resnet.py residual_block: 2 convs per block, 3 projections
            if n == 1 + 2 * {18: 8, 34: 16}[depth] + 3:
                return depth, False
            continue
        if n == 3 + 5 * sum(blocks) + 4 and stem_k == 3:
            return depth, True
        if n == 1 + 3 * sum(blocks) + 4:
            return depth, False
    return 50, False  # another count: read as ResNet-50, its missing or unknown names named


def _variant(w: dict) -> dict:
    """Depth, width, selective kernels, stem and head of the checkpoint's chosen variables.

    Raises:
        WeightsError: a variant no encoder of this project represents, named; no stem.
    """
    stem = w.get("base_model/conv2d/kernel")
    if stem is None:
        raise WeightsError("checkpoint: missing variable 'base_model/conv2d/kernel'")
    kh, _, _, cout = np.shape(official._check_ndim("base_model/conv2d/kernel", stem, 4))
    depth, sk = _count_variant(sum(bool(_CONV.fullmatch(n)) for n in w), kh)
    width = cout / (32 if sk else 64)
    name = f"ResNet-{depth} {width:g}x" + (" with selective kernels" if sk else "")
    if depth not in SIMCLR_DEPTHS:
        raise WeightsError(f"checkpoint: {name}: no encoder here has depth {depth} (50, 101, 152)")
    if width not in SIMCLR_WIDTHS:
        raise WeightsError(f"checkpoint: {name}: no encoder here has width {width:g}x (1x to 4x)")
    cifar = kh == 3 and not sk
    if cifar and (depth, width) != (50, 1):
        raise WeightsError(f"checkpoint: {name} with the CIFAR stem: no encoder here has it")
    layers = sum(n.startswith("head_contrastive/nl_") and n.endswith("/dense/kernel") for n in w)
    return {"depth": depth, "width": int(width), "sk": sk, "cifar_stem": cifar,
            "proj_layers": layers, "feature_dim": 2048 * int(width)}  # fmt: skip


def _expected(v: dict, out_dim: int, sup_in: int | None, classes: int | None) -> dict:
    """Every official variable name of the variant ``v`` (``_variant``) and its shape."""
    out: dict[str, tuple] = {}
    for scope, kind, shape in official_layers(v["depth"], v["width"], v["sk"], v["cifar_stem"]):
        roles = ("kernel",) if kind == "conv" else BN_ROLES
        out.update({f"{scope}/{r}": shape for r in roles})
    f, n = v["feature_dim"], v["proj_layers"]
    for j in range(n):
        last = j == n - 1
        dim = out_dim if last else f
        p = f"head_contrastive/nl_{j}"
        out[f"{p}/dense/kernel"] = (f, dim)
        roles = ("gamma", "moving_mean", "moving_variance") if last else BN_ROLES
        out.update({f"{p}/batch_normalization/{r}": (dim,) for r in roles})
    if classes is not None:
        out["head_supervised/linear_layer/dense/kernel"] = (sup_in, classes)
        out["head_supervised/linear_layer/dense/bias"] = (classes,)
    return out


def _head(w: dict, layers: int) -> tuple[dict, list]:
    """head_contrastive as our ProjectionHead: the middle layers as they are (Dense(no bias),
    BN, ReLU), the last Dense + BN(center=False) folded into one Dense(bias)."""
    state, pairs = {}, []
    for j in range(layers - 1):
        p = f"head_contrastive/nl_{j}"
        state[canonical_name("net/head", "dense", j, "kernel")] = w[f"{p}/dense/kernel"]
        for r in BN_ROLES:
            state[f"net/head/bn{j}/{r}"] = w[f"{p}/batch_normalization/{r}"]
        pairs.append((p, f"net/head/bn{j}"))
    p = f"head_contrastive/nl_{layers - 1}"
    kernel = np.asarray(w[f"{p}/dense/kernel"], np.float64)
    gamma, mean, var = (
        np.asarray(w[f"{p}/batch_normalization/{r}"], np.float64)
        for r in ("gamma", "moving_mean", "moving_variance")
    )
    scale = gamma / np.sqrt(var + official.BN_EPS)  # BN(center=False): gamma (x - mean) / sd
    state[canonical_name("net/head", "dense", layers - 1, "kernel")] = kernel * scale
    state[canonical_name("net/head", "dense", layers - 1, "bias")] = -mean * scale
    pairs.append((p, f"net/head/dense{layers - 1}"))
    return state, pairs


def _supervised(w: dict, v: dict, selector: int, out_dim: int):
    """``(input dim, classes)`` of head_supervised, or ``(None, None)`` if there is none.

    Raises:
        WeightsError: ``selector`` outside the projection head's ``hiddens_list``.
    """
    kernel = w.get("head_supervised/linear_layer/dense/kernel")
    n = v["proj_layers"]
    if not 0 <= selector <= n:
        raise WeightsError(
            f"ft_proj_selector: expected 0 (h) to {n} (the checkpoint's {n} projection "
            f"layers), got {selector}"
        )
    if kernel is None:
        return None, None
    classes = int(np.shape(official._check_ndim("head_supervised", kernel, 2))[-1])
    return (out_dim if selector == n and n else v["feature_dim"]), classes


def simclr_state(
    variables: dict, weights: str = "raw", ft_proj_selector: int = 0
) -> tuple[dict, dict, dict]:
    """The canonical state of an official SimCLR TF1 checkpoint, its supervised head apart.

    Args:
        variables: ``{checkpoint variable name: array}`` (``tf.train.load_checkpoint``).
        weights: ``"raw"`` (the trained variables) or ``"ema"`` (their ``ema_model/`` copy).
        ft_proj_selector: what the supervised head reads (see the module docstring).

    Returns:
        ``(state, info, supervised)``: ``state`` canonical, float64 (the last head layer's BN
        folded into its Dense; a head-less checkpoint gets a zero Dense(2048 w, 128) head);
        ``info``: variant, dims, the skipped variables by kind, ``pairs`` of the proof;
        ``supervised``: ``{"kernel" (in, classes), "bias", "ft_proj_selector"}`` or empty.

    Raises:
        WeightsError: a variant no encoder represents, an unknown, missing or misshapen name.
    """
    w, skipped, fallback = select_weights(variables, weights)
    v = _variant(w)
    n, f = v["proj_layers"], v["feature_dim"]
    last = f"head_contrastive/nl_{n - 1}/dense/kernel"
    out_dim = int(np.shape(official._check_ndim(last, w[last], 2))[-1]) if n else 128
    sup_in, classes = _supervised(w, v, ft_proj_selector, out_dim)
    official._check_keys(_expected(v, out_dim, sup_in, classes), w, "variable")
    state: dict[str, np.ndarray] = {}
    pairs = []
    for scope, layer in _canonical(v["depth"], v["width"], v["sk"], v["cifar_stem"]).items():
        roles = BN_ROLES if "/batch_normalization" in scope else ("kernel",)
        state.update({f"{layer}/{r}": w[f"{scope}/{r}"] for r in roles})
        pairs.append((scope, layer))
    if n:
        head, head_pairs = _head(w, n)
        pairs += head_pairs + [("h", "net/h"), ("z", "net/z")]
    else:  # a placeholder: the run needs a head; this one's z is 0
        head = {
            "net/head/dense0/kernel": np.zeros((f, out_dim)),
            "net/head/dense0/bias": np.zeros(out_dim),
        }
        pairs.append(("h", "net/h"))
    state.update(head)
    supervised = {}
    if classes is not None:
        p = "head_supervised/linear_layer/dense"
        supervised = {"kernel": w[f"{p}/kernel"], "bias": w[f"{p}/bias"],
                      "ft_proj_selector": np.asarray(ft_proj_selector)}  # fmt: skip
        pairs.append(("logits_sup", "net/logits_sup"))
    info = _info(v, weights, out_dim, classes, ft_proj_selector, skipped, fallback, pairs)
    return {k: np.asarray(a, np.float64) for k, a in state.items()}, info, supervised


def _info(v, weights, out_dim, classes, selector, skipped, fallback, pairs) -> dict:
    """What :func:`simclr_state` did, for the report and the run's config."""
    n = v["proj_layers"]
    head_less = (
        "z is absent: the checkpoint has no projection head (head_contrastive/nl_*; the released "
        "SimCLR v1 checkpoints carry none). The run's head is a zero Dense("
        f"{v['feature_dim']}, {out_dim}), a placeholder so that eval, finetune and port take the "
        "run: its z is 0 and nothing is proven of it"
    )
    variant = f"r{v['depth']}_{v['width']}x_sk{int(v['sk'])}"
    return {
        "format": "simclr-tf1",
        "version": {2: "v1", 3: "v2", 0: "head-less"}.get(n, f"{n}-layer head"),
        "variant": variant + ("_cifar" if v["cifar_stem"] else ""),
        "encoder": "resnet50_cifar"
        if v["cifar_stem"]
        else simclr_encoder(v["depth"], v["width"], v["sk"]),
        **v,
        "weights": weights,
        "raw_fallback": fallback,
        "dim": out_dim,
        "z": None if n else head_less,
        "supervised_classes": classes,
        "supervised_input": (
            None
            if classes is None
            else "h"
            if selector == 0
            else "z"
            if selector == n
            else f"head_contrastive/nl_{selector - 1} after its ReLU"
        ),  # fmt: skip
        "skipped": skipped,
        "pairs": pairs,
        "inference_only": [
            f"the last projection layer's Dense(no bias) + BN(center=False) (nl_{n - 1}) "
            "is folded into one Dense(bias): exact at inference, not in training"
        ]
        if n
        else [],
    }


def simclr_config(info: dict) -> dict:
    """The ``TrainConfig`` fields of an imported SimCLR run (``run.py``'s defaults: LARS,
    temperature 0.1, batch 512...; only the shape fields matter to a run)."""
    return {
        "method": "simclr",
        "encoder": info["encoder"],
        "proj_dim": info["dim"],
        "hidden_dim": info["feature_dim"],
        "head_layers": max(info["proj_layers"], 1),
        "temperature": 0.1,
        "batch_size": 512,
        "epochs": 100,
    }
