"""``python -m tf_impl train | eval | finetune | parity-dump`` (see ``shared.apps.impl_cli``)."""

from shared.apps.impl_cli import main

if __name__ == "__main__":
    raise SystemExit(main("tensorflow"))
