"""One thread for torch: the tests use tiny tensors and CI machines are shared."""

import torch

torch.set_num_threads(1)
