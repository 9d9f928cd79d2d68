"""The files of models that training jobs make, read the same way by the trainer
that writes them and by the upload format that serves them (the trainers sit
above uploads, so what both need lives here, below both)."""
