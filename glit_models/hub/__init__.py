"""Publishing GLiT weights: convert the authors' checkpoint (``python -m glit_models.hub.convert``), write
timm model cards, push a model folder to the Hugging Face Hub (``python -m glit_models.hub.push``)."""
