"""The hardware and model figures that capsim's derived profiles start from.

A deliberately small catalog: one GPU and one model, enough for the default scenario's
roofline profile. Every figure carries its source so a reader can check it.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["GPU", "ModelArch", "GPUS", "MODELS", "QUANTIZATIONS"]


@dataclass(frozen=True)
class GPU:
    """Datasheet figures of one accelerator (per GPU)."""

    name: str
    bf16_tflops: float  # dense, no sparsity
    hbm_tb_s: float
    memory_bytes: int
    interconnect_gb_s: float  # intra-node, per direction
    source: str


@dataclass(frozen=True)
class ModelArch:
    """Shapes of a Llama-architecture decoder (grouped-query attention, SwiGLU MLP)."""

    name: str
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    max_context: int
    tied_embeddings: bool
    source: str

    @property
    def layer_linear_params(self) -> int:
        """Weights of one layer's linear layers: q, k, v, o projections and the gated MLP."""
        q = self.hidden * self.heads * self.head_dim
        kv = 2 * self.hidden * self.kv_heads * self.head_dim
        o = self.heads * self.head_dim * self.hidden
        mlp = 3 * self.hidden * self.intermediate
        return q + kv + o + mlp

    @property
    def params(self) -> int:
        """All parameters: layers (with their two RMSNorms), embeddings, final norm, LM head."""
        per_layer = self.layer_linear_params + 2 * self.hidden
        embed = self.vocab * self.hidden
        head = 0 if self.tied_embeddings else self.vocab * self.hidden
        return self.layers * per_layer + embed + head + self.hidden

    def kv_bytes_per_token(self, kv_bytes_per_element: float) -> float:
        """Bytes of K and V cached per token across all layers."""
        return 2 * self.layers * self.kv_heads * self.head_dim * kv_bytes_per_element


GPUS: dict[str, GPU] = {
    "h100-sxm": GPU(
        name="NVIDIA H100 SXM5 80GB",
        bf16_tflops=989.4,
        hbm_tb_s=3.35,
        # nvidia-smi reports 81559 MiB on an H100 SXM5 80GB.
        memory_bytes=81559 * 2**20,
        interconnect_gb_s=450.0,  # NVLink 4: 900 GB/s bidirectional
        source="NVIDIA H100 Tensor Core GPU datasheet (SXM5), 2023",
    ),
}

MODELS: dict[str, ModelArch] = {
    "llama-3.1-8b": ModelArch(
        name="Llama-3.1-8B",
        layers=32,
        hidden=4096,
        heads=32,
        kv_heads=8,
        head_dim=128,
        intermediate=14336,
        vocab=128256,
        max_context=131072,
        tied_embeddings=False,
        source="meta-llama/Llama-3.1-8B config.json",
    ),
}

# Bytes per element of weights, activations and KV cache for each supported scheme.
QUANTIZATIONS: dict[str, dict[str, float]] = {
    "bf16": {"weight": 2.0, "activation": 2.0, "kv": 2.0},
}
