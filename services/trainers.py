"""What can be trained: per task, its trainer's library, dataset formats, base
models (and whether their files are here) and hyperparameters with their limits.
The same for every account: GET /trainers and the UI's training form read it."""

from marshmallow import validate

from model_registry.availability import presence
from model_registry.catalogue import MODELS
from tasks.spec import trainable_tasks, trainer_for


def describe_field(field) -> dict:
    """One hyperparameter as GET /trainers shows it: its type, default and limits."""
    described = {"type": type(field).__name__.lower(), "default": field.load_default,
                 "description": field.metadata.get("description", "")}
    for validator in field.validators:
        if isinstance(validator, validate.Range):
            described.update(min=validator.min, max=validator.max)
        elif isinstance(validator, validate.OneOf):
            described["choices"] = list(validator.choices)
    return described


def described_trainers(model_dir: str) -> list[dict]:
    described = []
    for task in trainable_tasks():
        trainer = trainer_for(task)
        base_models = sorted(key for key, spec in MODELS.items() if spec.loader in trainer.base_loaders)
        described.append({
            "task": task, "library": trainer.library, "dataset_formats": list(trainer.dataset_formats),
            "default_base_model": trainer.default_base_model,
            "base_models": base_models,
            "base_model_files": {key: presence(MODELS[key], model_dir).fields() for key in base_models},
            "hyperparameters": {name: describe_field(field)
                                for name, field in trainer.hyperparameters().fields.items()},
            "limitations": trainer.limitations,
        })
    return described
