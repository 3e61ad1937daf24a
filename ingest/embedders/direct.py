"""A leaner forward pass for the local embedder, for GPUs above all.

sentence-transformers tokenizes, pads and copies back batch by batch. Here a whole
window is tokenized in one call (parallel, in Rust), sorted by length so that each
batch pads only to its own longest text, fed to the transformer under
`torch.inference_mode`, pooled and normalized on the device, and copied to the host
once. Only the common shape is handled — a transformer, then CLS or mean pooling,
optionally a Normalize — and `DirectEncoder.for_model` returns None for anything
else, so the caller falls back to `SentenceTransformer.encode`.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np


def pooling_mode(module: Any) -> str | None:
    """'cls', 'mean', ... of a sentence-transformers Pooling module (any 3.x-6.x)."""
    mode = getattr(module, "pooling_mode", None)
    if isinstance(mode, str):
        return mode
    getter = getattr(module, "get_pooling_mode_str", None)
    return getter() if getter else None


class DirectEncoder:
    def __init__(self, transformer: Any, tokenizer: Any, pooling: str, max_tokens: int, device: str) -> None:
        self.transformer, self.pooling, self.device = transformer, pooling, device
        self.tokenizer = tokenizer
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length=max_tokens)

    @classmethod
    def for_model(cls, model: Any) -> DirectEncoder | None:
        """An encoder for a loaded SentenceTransformer, or None when its modules are
        not (Transformer, Pooling[cls|mean], [Normalize])."""
        modules = list(model)
        names = [type(m).__name__ for m in modules]
        if names not in (["Transformer", "Pooling"], ["Transformer", "Pooling", "Normalize"]):
            return None
        pooling = pooling_mode(modules[1])
        backend = getattr(getattr(model, "tokenizer", None), "backend_tokenizer", None)
        auto_model = getattr(modules[0], "auto_model", None)
        if pooling not in ("cls", "mean") or backend is None or auto_model is None:
            return None
        from tokenizers import (
            Tokenizer,  # comes with transformers, in the `local` extra
        )

        return cls(
            auto_model, Tokenizer.from_str(backend.to_str()), pooling, int(model.max_seq_length), str(model.device)
        )

    def encode(self, texts: Sequence[str], batch_size: int) -> np.ndarray:
        import torch  # heavy, and only in the `local` extra

        encodings = self.tokenizer.encode_batch(list(texts), add_special_tokens=True)
        lengths = np.fromiter((len(e.ids) for e in encodings), dtype=np.int64, count=len(encodings))
        order = np.argsort(-lengths, kind="stable")
        pieces = []
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                rows = order[start : start + batch_size]
                width = int(lengths[rows[0]])  # the longest of the batch: sorted descending
                ids = np.zeros((len(rows), width), dtype=np.int64)
                mask = np.zeros((len(rows), width), dtype=np.int64)
                for row, index in enumerate(rows):
                    tokens = encodings[index].ids
                    ids[row, : len(tokens)] = tokens
                    mask[row, : len(tokens)] = 1
                ids_t = torch.from_numpy(ids).to(self.device, non_blocking=True)
                mask_t = torch.from_numpy(mask).to(self.device, non_blocking=True)
                hidden = self.transformer(input_ids=ids_t, attention_mask=mask_t).last_hidden_state
                if self.pooling == "cls":
                    pooled = hidden[:, 0].float()
                else:
                    weights = mask_t.unsqueeze(-1).to(hidden.dtype)
                    pooled = (hidden * weights).sum(1).float() / weights.sum(1).float().clamp(min=1e-9)
                pieces.append(torch.nn.functional.normalize(pooled, dim=-1))
            vectors = torch.cat(pieces).cpu().numpy() if pieces else np.empty((0, 0), dtype=np.float32)
        result = np.empty_like(vectors)
        result[order] = vectors  # back to input order
        return result
