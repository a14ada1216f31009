"""Publishing GLiT weights: convert the authors' checkpoint, write timm model cards, push to the Hub."""
