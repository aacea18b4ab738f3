"""Export a bundle's backbone to ONNX and run it with onnxruntime alone, preprocessing from the json beside it.

    python examples/export_onnx.py OUT/ [IMAGE.jpg]
"""

import json
import sys

import numpy as np
from PIL import Image

import ssltk


def main(bundle: str, image_path: str | None = None) -> np.ndarray:
    result = ssltk.export(bundle, format="onnx", overwrite=True)  # BUNDLE/model.onnx, parity checked
    print(f"{result.out}: max |onnx - torch| = {result.max_abs_diff:.1e}")

    # From here on only onnxruntime, numpy and PIL: what a deployment needs.
    import onnxruntime as ort

    pre = json.loads(result.preprocess_file.read_text())
    _, height, width = pre["input_size"]
    image = Image.open(image_path).convert("RGB") if image_path else Image.new("RGB", (320, 240), "gray")
    pixels = np.asarray(image.resize((width, height), Image.BILINEAR), dtype=np.float32) / 255.0
    x = ((pixels - pre["mean"]) / pre["std"]).transpose(2, 0, 1)[None].astype(np.float32)  # [1, C, H, W]
    session = ort.InferenceSession(str(result.out), providers=["CPUExecutionProvider"])
    features = session.run([pre["output"]], {pre["input"]: np.concatenate([x, x])})[0]  # any batch size
    print(f"features {features.shape}")
    return features


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None)
