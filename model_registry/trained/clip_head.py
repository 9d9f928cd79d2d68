"""A CLIP linear probe's files and its forward pass, as training writes them and
serving reads them: the frozen CLIP image encoder (the service's own CLIP loader
steps), the head's saved coef_/intercept_ and its classes."""

import json
import os

HEAD_FILE = "head.safetensors"
TRAINED_FILE = "trained.json"
PURPOSE = "image features for a linear probe"


def image_encoder(path: str, device: str = "cpu", half: bool = False):
    """(the CLIP model, encode(list of PIL images) -> L2-normalised float32 features,
    a numpy array): the same features at training and at serving."""
    import torch
    from transformers import CLIPModel

    # The service's CLIP loader's own steps: its image processor (PIL, no torchvision)
    # and its reading of get_image_features' output, so the probe sees what CLIP serves.
    from model_registry.loaders.clip import features_of, image_processor
    from model_registry.loaders.common import from_pretrained, place

    processor = image_processor(path)
    model = place(from_pretrained(CLIPModel, path, PURPOSE), device, half)
    dtype = next(model.parameters()).dtype

    def encode(images: list):
        pixels = processor(images=images, return_tensors="pt")["pixel_values"].to(device, dtype)
        with torch.inference_mode():
            features = features_of(model.get_image_features(pixel_values=pixels)).float()
        return torch.nn.functional.normalize(features, dim=-1).cpu().numpy()

    return model, encode


def head_probabilities(features, coef, intercept):
    """LogisticRegression.predict_proba from its saved coef_ and intercept_: a
    sigmoid for two classes (one row of coef_), a softmax for more."""
    import numpy as np

    scores = features @ coef.T + intercept
    if coef.shape[0] == 1:
        positive = 1.0 / (1.0 + np.exp(-scores[:, 0]))
        return np.stack([1.0 - positive, positive], axis=1)
    scores = scores - scores.max(axis=1, keepdims=True)
    exp = np.exp(scores)
    return exp / exp.sum(axis=1, keepdims=True)


def load_head(files_dir: str):
    """(coef_, intercept_, classes) of a saved probe."""
    from safetensors.numpy import load_file

    tensors = load_file(os.path.join(files_dir, HEAD_FILE))
    with open(os.path.join(files_dir, TRAINED_FILE)) as file:
        classes = json.load(file)["labels"]
    return tensors["coef"], tensors["intercept"], classes
