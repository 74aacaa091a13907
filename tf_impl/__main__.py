"""``python -m tf_impl train | eval | finetune | parity-dump`` (see ``shared.apps.impl_cli``)."""

import os
import sys
import tempfile

from shared.apps.impl_cli import main as _main

# TF 2.21 writes these through absl before its logging is set up, so TF_CPP_MIN_LOG_LEVEL does
# not reach them. On a machine without a GPU they say nothing but "there is no GPU".
IMPORT_NOISE = (
    "absl::InitializeLog",
    "cudart_stub.cc",
    "cuda_platform.cc",
    "cuda_executor.cc",
    "failed call to cuInit",
    "oneDNN custom operations are on",  # port.cc, on CPUs where oneDNN picks its own kernels
)


def import_tensorflow_quietly() -> None:
    """Import TF and list its devices with file descriptor 2 caught, then pass on every line
    that is not one of ``IMPORT_NOISE``. ``--verbose`` skips this and shows everything."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            import tensorflow as tf

            tf.config.list_physical_devices()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            for line in caught.read().decode(errors="replace").splitlines():
                if not any(noise in line for noise in IMPORT_NOISE):
                    print(line, file=sys.stderr)


def main(argv=None) -> int:
    """Parse and check ``argv`` first; TensorFlow is imported (quietly) only when the command
    runs, so ``--help`` and a bad argument answer without it."""
    return _main("tensorflow", argv, import_framework=import_tensorflow_quietly)


if __name__ == "__main__":
    raise SystemExit(main())
