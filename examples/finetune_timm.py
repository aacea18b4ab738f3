"""Fine-tune an ssltk bundle with plain timm: a new K-way head on the trained backbone, no ssltk import.

    python examples/finetune_timm.py OUT/ [NUM_CLASSES]
"""

import sys

import timm
import torch
from safetensors.torch import load_file


def main(bundle: str, num_classes: int = 10) -> torch.nn.Module:
    # config.json names the classifier (pretrained_cfg.classifier, e.g. "fc" or "head.fc"), so timm
    # loads every backbone weight and leaves a fresh num_classes-way head in its place.
    model = timm.create_model(f"local-dir:{bundle}", pretrained=True, num_classes=num_classes)
    saved = load_file(f"{bundle}/model.safetensors")
    new = sorted(set(model.state_dict()) - set(saved))
    print(f"{model.pretrained_cfg['architecture']}: new head {new}, {len(saved)} tensors from the bundle")

    data_config = timm.data.resolve_model_data_config(model)  # input size, mean/std from config.json
    images = torch.randn(8, *data_config["input_size"])  # stand-in for a batch of your labelled images
    labels = torch.randint(0, num_classes, (8,))
    optimizer = torch.optim.AdamW([
        {"params": model.get_classifier().parameters(), "lr": 1e-3},  # the new head learns faster
        {"params": [p for n, p in model.named_parameters() if n not in new], "lr": 1e-4},
    ])
    model.train()
    for step in range(3):
        loss = torch.nn.functional.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        print(f"step {step + 1} loss {loss.item():.4f}")
    return model


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 10)
