"""``python -m torch_impl train | eval | finetune | parity-dump`` (see ``shared.apps.impl_cli``)."""

from shared.apps.impl_cli import main as _main


def main(argv=None) -> int:
    return _main("torch", argv)


if __name__ == "__main__":
    raise SystemExit(main())
