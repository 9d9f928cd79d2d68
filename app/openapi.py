"""Write the OpenAPI document generated from the code: `python -m app.openapi > openapi.yaml`.

tests/test_openapi.py fails when the committed openapi.yaml differs from this.
"""

import sys
import tempfile

import yaml


def generate() -> dict:
    from . import create_app

    # A throwaway data dir: generating the document must not touch real data.
    with tempfile.TemporaryDirectory() as data_dir:
        app = create_app({"DATA_DIR": data_dir, "BOOTSTRAP_KEY": False, "DATABASE_URL": "sqlite://", "BUILDER": False,
                          "TRAINER": False, "PREDICTIONS": False})
        return app.extensions["api"].spec.to_dict()


def render(spec: dict) -> str:
    return yaml.safe_dump(spec, sort_keys=True, allow_unicode=True, width=100)


if __name__ == "__main__":
    sys.stdout.write(render(generate()))
