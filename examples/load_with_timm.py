"""Use an ssltk bundle's backbone with plain timm: no ssltk import needed.

    python examples/load_with_timm.py OUT/ [IMAGE.jpg]
"""

import sys

import timm
import torch
from PIL import Image


def main(bundle: str, image_path: str | None = None) -> torch.Tensor:
    # pretrained=True loads OUT/model.safetensors; without it timm builds random weights.
    model = timm.create_model(f"local-dir:{bundle}", pretrained=True).eval()
    # Input size, mean/std and interpolation come from OUT/config.json.
    data_config = timm.data.resolve_model_data_config(model)
    transform = timm.data.create_transform(**data_config, is_training=False)
    image = Image.open(image_path).convert("RGB") if image_path else Image.new("RGB", (320, 240), "gray")
    with torch.no_grad():
        features = model(transform(image).unsqueeze(0))  # pooled features [1, num_features]
    print(f"{model.pretrained_cfg['architecture']}: features {tuple(features.shape)}")
    return features


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None)
