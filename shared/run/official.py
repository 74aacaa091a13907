"""The official SimCLR and MoCo checkpoints' names, mapped onto the canonical weights.

Framework-free: the readers (``torch_impl.official``, ``tf_impl.official``) hand this module
plain arrays; it checks every name and shape, skips what is not a weight of the network, and
returns the canonical state (``shared.parity.weights``) with a report of what it did.

Two formats:

* ``moco``: facebookresearch/moco's ``checkpoint_*.pth.tar`` (``main_moco.py``'s
  ``save_checkpoint``: ``{"epoch", "arch", "state_dict", "optimizer"}``); ``state_dict`` is a
  DistributedDataParallel ``MoCo``'s, so every key starts ``module.`` (``moco/builder.py``):
  ``encoder_q.*`` and ``encoder_k.*`` are torchvision ResNets whose ``fc`` is
  ``Linear(2048, dim)`` (v1) or ``Sequential(Linear(2048, 2048), ReLU, Linear(2048, dim))``
  (v2, ``--mlp``); ``queue`` is (dim, K), ``queue_ptr`` a (1,) long.
* ``simclr-tf1``: google-research/simclr's TF1 checkpoints. ``model.py`` builds the ResNet
  under ``variable_scope("base_model")`` with ``tf.layers``, which names the layers by
  creation order (``conv2d``, ``conv2d_1``, ..., ``batch_normalization``, ...);
  ``resnet.py``'s ``bottleneck_block`` creates the projection shortcut (1x1 conv + BN)
  *before* the block's three convs. ``model_util.py``'s ``projection_head`` is
  ``head_contrastive/nl_<j>/{dense, batch_normalization}`` (dense without bias, then BN; BN
  ``center=False`` on the last layer), its ``supervised_head``
  ``head_supervised/linear_layer/dense/{kernel, bias}``. This module keeps the layer walk
  (:func:`simclr_layers`); the checkpoint's mapping, every released variant's, is
  ``shared.run.simclr_tf1``.

Canonical layers walk torchvision's module order (conv1, bn1, then per Bottleneck conv1, bn1,
conv2, bn2, conv3, bn3, downsample.0, downsample.1), numbered per kind within
``<part>/encoder`` and ``<part>/head``.
"""

from __future__ import annotations

import reprlib

import numpy as np

from shared.parity.weights import WeightsError, canonical_name

__all__ = [
    "BN_EPS",
    "FORMATS",
    "INPUT_CONVENTIONS",
    "RESNET50_BLOCKS",
    "moco_config",
    "moco_state",
    "simclr_layers",
    "torchvision_layers",
]

FORMATS = ("moco", "simclr-tf1")
NUMERIC_KINDS = "biuf"  # numpy dtype kinds a weight may have: bool, integers, floats
BN_EPS = 1e-5  # resnet.py BATCH_NORM_EPSILON; torchvision's BatchNorm2d default; ours
RESNET50_BLOCKS = (3, 4, 6, 3)  # resnet.py resnet_v1 model_params[50]; torchvision resnet50
INPUT_CONVENTIONS = {
    # main_moco.py: transforms.ToTensor() then Normalize(ImageNet mean, std)
    "moco": "RGB in [0, 1], then normalised by ImageNet's mean (0.485, 0.456, 0.406) and "
    "std (0.229, 0.224, 0.225)",
    # simclr data_util.py: images are converted to float in [0, 1], no mean/std normalisation
    "simclr-tf1": "RGB in [0, 1], no mean/std normalisation",
}


def torchvision_layers(blocks=RESNET50_BLOCKS) -> list[tuple[str, str]]:
    """``(torchvision module name, kind)`` of a Bottleneck ResNet's conv and BN layers, in
    torchvision's module order (``Bottleneck.__init__`` registers conv1..bn3, then
    ``downsample``)."""
    out = [("conv1", "conv"), ("bn1", "bn")]
    for stage, n in enumerate(blocks, start=1):
        for b in range(n):
            p = f"layer{stage}.{b}"
            for j in (1, 2, 3):
                out += [(f"{p}.conv{j}", "conv"), (f"{p}.bn{j}", "bn")]
            if b == 0:
                out += [(f"{p}.downsample.0", "conv"), (f"{p}.downsample.1", "bn")]
    return out


def simclr_layers(blocks=RESNET50_BLOCKS) -> list[tuple[str, str, str]]:
    """``(official scope, kind, torchvision name)`` of the official ResNet's layers, in
    torchvision's order; the official scope is the ``tf.layers`` auto-name, numbered in
    ``resnet.py``'s creation order (stem; per block: projection conv + BN first, then
    conv-BN three times)."""
    created = [("conv1", "conv"), ("bn1", "bn")]
    for stage, n in enumerate(blocks, start=1):
        for b in range(n):
            p = f"layer{stage}.{b}"
            if b == 0:  # resnet.py bottleneck_block: the shortcut is created first
                created += [(f"{p}.downsample.0", "conv"), (f"{p}.downsample.1", "bn")]
            for j in (1, 2, 3):
                created += [(f"{p}.conv{j}", "conv"), (f"{p}.bn{j}", "bn")]
    counts, scope = {"conv": 0, "bn": 0}, {}
    for tv, kind in created:
        base = "conv2d" if kind == "conv" else "batch_normalization"
        i = counts[kind]
        counts[kind] += 1
        scope[tv] = f"base_model/{base}" + (f"_{i}" if i else "")
    return [(scope[tv], kind, tv) for tv, kind in torchvision_layers(blocks)]


def _canonical_encoder(prefix: str, blocks=RESNET50_BLOCKS) -> dict[str, str]:
    """torchvision name -> canonical layer (``<prefix>/encoder/conv<i>``)."""
    counts: dict[str, int] = {}
    out = {}
    for tv, kind in torchvision_layers(blocks):
        i = counts[kind] = counts.get(kind, -1) + 1
        out[tv] = f"{prefix}/encoder/{kind}{i}"
    return out


def _check_shape(name: str, array, shape: tuple) -> np.ndarray:
    if not isinstance(array, np.ndarray) or array.dtype.kind not in NUMERIC_KINDS:
        got = f"a {array.dtype} array" if isinstance(array, np.ndarray) else type(array).__name__
        raise WeightsError(f"checkpoint: {name} is {got}, expected an array of numbers")
    if tuple(np.shape(array)) != tuple(shape):
        raise WeightsError(
            f"checkpoint: {name} has shape {tuple(np.shape(array))}, expected {tuple(shape)}"
        )
    return np.asarray(array)


def _check_ndim(name: str, array, ndim: int):
    """``array``, if it has ``ndim`` dimensions (read before the full check of the shapes)."""
    if np.ndim(array) != ndim:
        raise WeightsError(
            f"checkpoint: {name} has shape {tuple(np.shape(array))}, expected {ndim} dimensions"
        )
    return array


def _bn_entries(layer: str, gamma, beta, mean, var) -> dict[str, np.ndarray]:
    roles = ("gamma", "beta", "moving_mean", "moving_variance")
    return {f"{layer}/{r}": np.asarray(a) for r, a in zip(roles, (gamma, beta, mean, var))}


def _resnet50_shapes() -> dict[str, tuple]:
    """torchvision name -> torch weight shape (OIHW) of resnet50's convs, (C,) of its BNs."""
    shapes = {"conv1": (64, 3, 7, 7), "bn1": (64,)}
    c_in = 64
    for stage, n in enumerate(RESNET50_BLOCKS, start=1):
        w = 64 * 2 ** (stage - 1)
        for b in range(n):
            p = f"layer{stage}.{b}"
            shapes.update(
                {
                    f"{p}.conv1": (w, c_in, 1, 1),
                    f"{p}.bn1": (w,),
                    f"{p}.conv2": (w, w, 3, 3),
                    f"{p}.bn2": (w,),
                    f"{p}.conv3": (4 * w, w, 1, 1),
                    f"{p}.bn3": (4 * w,),
                }
            )
            if b == 0:
                shapes[f"{p}.downsample.0"] = (4 * w, c_in, 1, 1)
                shapes[f"{p}.downsample.1"] = (4 * w,)
            c_in = 4 * w
    return shapes


# --- moco -------------------------------------------------------------------------------


def _moco_version(sd: dict) -> str:
    if "module.encoder_q.fc.0.weight" in sd:
        return "v2"
    if "module.encoder_q.fc.weight" in sd:
        return "v1"
    raise WeightsError(
        "checkpoint: no module.encoder_q.fc.0.weight (MoCo v2) nor module.encoder_q.fc.weight "
        "(v1) in state_dict; is it a facebookresearch/moco checkpoint?"
    )


def _moco_expected(version: str, dim: int, k: int) -> dict[str, tuple]:
    """Every state_dict key of an official MoCo resnet50 and its shape."""
    out: dict[str, tuple] = {}
    for part in ("encoder_q", "encoder_k"):
        for tv, shape in _resnet50_shapes().items():
            p = f"module.{part}.{tv}"
            if len(shape) == 4:
                out[f"{p}.weight"] = shape
            else:
                for role in ("weight", "bias", "running_mean", "running_var"):
                    out[f"{p}.{role}"] = shape
                out[f"{p}.num_batches_tracked"] = ()
        fc = f"module.{part}.fc"
        if version == "v2":
            out.update({f"{fc}.0.weight": (2048, 2048), f"{fc}.0.bias": (2048,)})
            out.update({f"{fc}.2.weight": (dim, 2048), f"{fc}.2.bias": (dim,)})
        else:
            out.update({f"{fc}.weight": (dim, 2048), f"{fc}.bias": (dim,)})
    out.update({"module.queue": (dim, k), "module.queue_ptr": (1,)})
    return out


def _check_keys(expected: dict, got: dict, what: str) -> None:
    missing = [n for n in expected if n not in got]
    unknown = [n for n in got if n not in expected]
    if unknown:
        raise WeightsError(f"checkpoint: unknown {what} {unknown[0]!r} ({len(unknown)} in all)")
    if missing:
        raise WeightsError(f"checkpoint: missing {what} {missing[0]!r} ({len(missing)} in all)")
    for n, shape in expected.items():
        _check_shape(n, got[n], shape)


def moco_state(checkpoint: dict) -> tuple[dict, dict]:
    """The canonical state of an official MoCo checkpoint, and what the mapping did.

    Args:
        checkpoint: the loaded ``.pth.tar``: ``{"epoch", "arch", "state_dict": {key: array},
            "optimizer"}``, arrays as NumPy (torch's layouts: OIHW, (out, in)).

    Returns:
        ``(state, info)``: ``state`` canonical (``encoder_q/...``, ``encoder_k/...``, ``queue``
        (K, D), ``queue_ptr``); ``info``: version, dims, the skipped entries by kind, and
        ``pairs``, ``[(torchvision name, canonical layer)]`` of the proof.

    Raises:
        WeightsError: another arch, an unknown, missing or misshapen key (one line, named).
    """
    _check_moco_fields(checkpoint)
    arch = checkpoint.get("arch")
    if arch != "resnet50":
        raise WeightsError(
            f"checkpoint: arch {reprlib.repr(arch)} is not supported (resnet50 only)"
        )
    sd = checkpoint["state_dict"]
    version = _moco_version(sd)
    queue = sd.get("module.queue")
    if queue is None or np.ndim(queue) != 2:
        raise WeightsError("checkpoint: module.queue missing or not a (dim, K) matrix")
    dim, k = np.shape(queue)
    _check_keys(_moco_expected(version, dim, k), sd, "state_dict key")
    state: dict[str, np.ndarray] = {}
    pairs: list[tuple[str, str]] = []
    for part in ("encoder_q", "encoder_k"):
        names = _canonical_encoder(part)
        for tv, layer in names.items():
            p = f"module.{part}.{tv}"
            if layer.rsplit("/", 1)[1].startswith("conv"):
                state[f"{layer}/kernel"] = np.transpose(sd[f"{p}.weight"], (2, 3, 1, 0))
            else:
                state.update(
                    _bn_entries(
                        layer,
                        sd[f"{p}.weight"],
                        sd[f"{p}.bias"],
                        sd[f"{p}.running_mean"],
                        sd[f"{p}.running_var"],
                    )
                )
            pairs.append((f"{part}.{tv}", layer))
        head, head_pairs = _moco_head(sd, f"module.{part}.fc", f"{part}/head", version)
        state.update(head)
        pairs += [(f"{part}.{a}", b) for a, b in head_pairs]
        pairs += [(f"{part}.h", f"{part}/h"), (f"{part}.z", f"{part}/z")]
    state["queue"] = np.ascontiguousarray(np.transpose(sd["module.queue"]))  # (D, K) -> (K, D)
    ptr = np.asarray(int(np.asarray(sd["module.queue_ptr"]).reshape(-1)[0]))
    info = _moco_info(checkpoint, version, int(dim), int(k), pairs)
    state = {k: np.asarray(v, np.float64) for k, v in state.items()}  # folded entries exact
    return {**state, "queue_ptr": ptr}, info


def _check_moco_fields(checkpoint) -> None:
    """The types of a read MoCo checkpoint's fields: a dict whose ``epoch`` (if any) is an
    integer >= 0 and whose ``state_dict`` maps names to arrays (their shapes are checked later,
    against the architecture).

    Raises:
        WeightsError: the first field of another type, named with its value (shortened).
    """
    if not isinstance(checkpoint, dict):
        raise WeightsError(f"checkpoint: expected a dict, got {type(checkpoint).__name__}")
    epoch = checkpoint.get("epoch", 0)
    if not isinstance(epoch, (int, np.integer)) or isinstance(epoch, bool) or epoch < 0:
        raise WeightsError(
            f"checkpoint: epoch: expected an integer >= 0, got {reprlib.repr(epoch)}"
        )
    sd = checkpoint.get("state_dict")
    if not isinstance(sd, dict):
        raise WeightsError(f"checkpoint: state_dict: expected a dict, got {type(sd).__name__}")
    for name, array in sd.items():
        if not isinstance(name, str):
            raise WeightsError(
                f"checkpoint: state_dict: expected str keys, got {reprlib.repr(name)}"
            )
        if not isinstance(array, np.ndarray):
            raise WeightsError(
                f"checkpoint: state_dict[{reprlib.repr(name)}]: expected an array, got "
                f"{type(array).__name__} {reprlib.repr(array)}"
            )


def _moco_info(checkpoint: dict, version: str, dim: int, k: int, pairs: list) -> dict:
    """What :func:`moco_state` did: version, dims, the skipped entries by kind, the proof's
    ``pairs`` and what holds at inference only."""
    return {
        "format": "moco",
        "version": version,
        "epoch": int(checkpoint.get("epoch", 0)),
        "dim": dim,
        "queue_size": k,
        "skipped": {
            "num_batches_tracked (BN step counters)": sum(
                n.endswith("num_batches_tracked") for n in checkpoint["state_dict"]
            ),
            "optimizer state (SGD momentum buffers)": int(checkpoint.get("optimizer_entries", 0)),
        },
        "pairs": pairs,
        "inference_only": [],
    }


def _moco_head(sd: dict, fc: str, prefix: str, version: str):
    """MoCo's fc as our ProjectionHead without BN (``head_bn=False``): v1 one Linear; v2
    Linear(bias)-ReLU-Linear, layer for layer."""
    state, pairs = {}, []
    for i, suffix in enumerate([""] if version == "v1" else [".0", ".2"]):
        state[canonical_name(prefix, "dense", i, "kernel")] = np.transpose(
            sd[f"{fc}{suffix}.weight"]
        )
        state[canonical_name(prefix, "dense", i, "bias")] = np.asarray(sd[f"{fc}{suffix}.bias"])
        pairs.append((f"fc{suffix}", f"{prefix}/dense{i}"))
    return state, pairs


def moco_config(info: dict) -> dict:
    """The ``TrainConfig`` fields of an imported MoCo run (``main_moco.py``'s defaults, and
    the README's v2 recipe: ``--moco-t 0.2``); the rest stay the project's defaults."""
    return {
        "method": "moco",
        "encoder": "resnet50",
        "proj_dim": info["dim"],
        "hidden_dim": 2048,
        "head_layers": 2 if info["version"] == "v2" else 1,
        "head_bn": False,  # builder.py: Linear(2048, 2048), ReLU, fc
        "queue_size": info["queue_size"],
        "key_momentum": 0.999,
        "temperature": 0.2 if info["version"] == "v2" else 0.07,
        "batch_size": 256,
        "symmetric": False,  # builder.py: one loss per pair, q from im_q, k from im_k
        "lr": 0.03,
        "weight_decay": 1e-4,
        "epochs": max(1, info["epoch"]),
    }
