"""A Llama-architecture decoder with random weights at a catalog model's real shapes.

The harness times what a serving engine runs per iteration, so the model is built the way
engines build it, not the way training code does:

- fused projections (one ``qkv`` and one ``gate_up`` matmul per layer, as vLLM fuses them);
- RMSNorm, rotary embeddings (Llama 3's base of 500,000), grouped-query attention over a
  pre-allocated KV cache, SwiGLU MLP, residual adds;
- the LM head over the **last position of each sequence only**, unquantized: in 16 bits for
  quantized schemes, as quantized checkpoints keep embeddings and the head (bf16; fp32 only for
  CPU int8 on a CPU without native bf16 matmuls), else in the activation precision.

Weights are random (the kernels' speed does not depend on the values), drawn uniformly with
variance ``1 / in_features`` so activations stay of order one through the layers, from a seed:
each tensor has its own stream derived from ``(seed, layer, tensor)``, so a model built with 2
layers has the same first layers as one built with 4, and every scheme quantizes *the same*
fp32 weights (the tests compare an int8 model with the fp32 one). Tensors of more than 4M
elements repeat one random block of that size (see ``_RANDOM_BLOCK``): building an 8B layer
then takes a fraction of a second instead of several.

Linear layers run on the kernels PyTorch itself ships, chosen by scheme and device
(:func:`resolve_scheme`):

==========  =====================================================  ===========================
scheme      CPU                                                    CUDA
==========  =====================================================  ===========================
fp32        ``F.linear`` in fp32                                   ``F.linear`` in fp32
bf16        ``F.linear`` in bf16 (AMX/AVX-512 where present)       ``F.linear`` in bf16
fp16        as bf16 (CPUs run fp16 checkpoints' weights in bf16)   ``F.linear`` in fp16
int8        ``quantize_dynamic``: qint8 per-channel weights,       ``torch._int_mm``: int8 per-
            int8 activations quantized per call (fbgemm/onednn)    channel weights, per-token
                                                                   int8 activations
fp8         -- (no fp8 matmul on CPU)                              ``torch._scaled_mm``, e4m3
                                                                   with per-tensor scales
                                                                   (compute capability >= 8.9)
int4-awq    ``_weight_int4pack_mm_for_cpu``: 4-bit weights in      ``_weight_int4pack_mm``
            groups of 128 with bf16 scales and zero points         (tinygemm), same layout,
            (weight-only; bf16 activations)                        compute capability >= 8.0
==========  =====================================================  ===========================

The CUDA int8 and fp8 paths quantize activations with separate PyTorch ops before the matmul
and rescale after it (vLLM fuses these into the kernel's prologue and epilogue); their
per-token cost is therefore an upper bound of what a fused engine pays. On CPU, the int8
scheme keeps activations and the KV cache in fp32 (its kernels take fp32), so its KV bytes
per token are twice a 16-bit cache's; the scheme's description says so.

Steps run eagerly (no CUDA graphs, no ``torch.compile``): on a GPU a small decode step
includes kernel-launch overhead that engines replaying CUDA graphs avoid; a fitted model
carries it in its fixed and per-layer terms.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention.bias import causal_lower_right

from calibration.catalog import MODELS, QUANTIZATIONS, ModelArch, close_matches

__all__ = ["KERNELS", "HarnessError", "KVCache", "LlamaDecoder", "Scheme", "build_model", "make_linear",
           "resolve_device", "resolve_scheme"]

# The linear-layer kernels the harness knows, by name (the ``kernel`` of a Scheme).
KERNELS: tuple[str, ...] = ("dense", "int8-dynamic", "int8-int-mm", "fp8-scaled-mm", "int4-tinygemm")

# Group size of the 4-bit weight-only scheme (AWQ/GPTQ checkpoints use 128).
INT4_GROUP = 128
# Rotary base of Llama 3 (the catalog does not carry it; the speed does not depend on it).
ROPE_THETA = 500_000.0
RMS_EPS = 1e-5
# fp8 e4m3's largest finite value.
_E4M3_MAX = 448.0
# torch._int_mm on CUDA refuses fewer than 17 rows; smaller batches are padded to this many.
_INT_MM_MIN_ROWS = 32
# Inner k-tiles of the packed int4 layout (the value gpt-fast and torchao use on CUDA).
_INT4_INNER_K_TILES = 8


class HarnessError(ValueError):
    """A scheme, device or shape the harness cannot run; one line naming the field, value and rule."""


@dataclass(frozen=True)
class Scheme:
    """What a quantization scheme becomes on a device: the linear-layer kernel, the precision
    activations, embeddings, the LM head and the KV cache are kept in, and a note where the
    device forced a substitution."""

    quant: str
    device: torch.device
    kernel: str
    act_dtype: torch.dtype
    head_dtype: torch.dtype
    note: str | None = None

    @property
    def description(self) -> str:
        """One line for provenance, e.g. ``int8 on cpu: int8-dynamic linears, float32
        activations and KV cache, bfloat16 embeddings and LM head``."""
        act, head = (str(d).removeprefix("torch.") for d in (self.act_dtype, self.head_dtype))
        text = (f"{self.quant} on {self.device}: {self.kernel} linears, {act} activations and KV cache, "
                f"{head} embeddings and LM head")
        return text + (f" ({self.note})" if self.note else "")


# scheme -> (kernel, activation dtype, note) per device type. "int4" is accepted for "int4-awq".
_CPU_SCHEMES: dict[str, tuple[str, torch.dtype, str | None]] = {
    "fp32": ("dense", torch.float32, None),
    "bf16": ("dense", torch.bfloat16, None),
    "fp16": ("dense", torch.bfloat16, "a CPU has no fp16 matmul: the 2-byte weights run in bf16"),
    "int8": ("int8-dynamic", torch.float32, None),
    "int4-awq": ("int4-tinygemm", torch.bfloat16, None),
}
_CUDA_SCHEMES: dict[str, tuple[str, torch.dtype, str | None]] = {
    "fp32": ("dense", torch.float32, None),
    "bf16": ("dense", torch.bfloat16, None),
    "fp16": ("dense", torch.float16, None),
    "fp8": ("fp8-scaled-mm", torch.bfloat16, None),
    "int8": ("int8-int-mm", torch.bfloat16, None),
    "int4-awq": ("int4-tinygemm", torch.bfloat16, None),
}
_WHY_NOT: dict[tuple[str, str], str] = {
    ("cpu", "fp8"): "PyTorch has no fp8 matmul kernel for CPUs; fp8 needs a CUDA GPU of compute capability "
                    ">= 8.9 (Ada, Hopper)",
    ("cpu", "fp8-weight-only"): "PyTorch has no fused fp8 weight-only kernel (vLLM's Marlin is not part of it)",
    ("cuda", "fp8-weight-only"): "PyTorch has no fused fp8 weight-only kernel (vLLM's Marlin is not part of it)",
    ("cpu", "nvfp4"): "PyTorch has no fp4 matmul kernel for CPUs",
    ("cuda", "nvfp4"): "the harness does not run NVFP4 (blockwise-scaled fp4 needs Blackwell and swizzled scales)",
}


def resolve_device(device: str | torch.device) -> torch.device:
    """``'cpu'``, ``'cuda'`` or ``'cuda:N'`` as a torch device; HarnessError if CUDA is asked
    for and absent."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise HarnessError(f"device = {device!r}: not a device name ({e}); use 'cpu' or 'cuda'") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise HarnessError(f"device = {device!r}: torch.cuda.is_available() is False "
                               f"(torch {torch.__version__}); use device='cpu'")
        if dev.index is None:
            dev = torch.device("cuda", torch.cuda.current_device())
    elif dev.type != "cpu":
        raise HarnessError(f"device = {device!r}: the harness runs on 'cpu' or 'cuda'")
    return dev


def resolve_scheme(quant: str, device: str | torch.device = "cpu") -> Scheme:
    """The kernel and precisions ``quant`` (a catalog scheme, or ``fp32``) runs with on
    ``device``; HarnessError naming the scheme, the device and why, where PyTorch has no
    kernel for it there (or this torch build or GPU lacks it)."""
    dev = resolve_device(device)
    key = "int4-awq" if quant == "int4" else quant
    if key not in QUANTIZATIONS and key != "fp32":
        known = ["fp32", *QUANTIZATIONS]
        raise HarnessError(f"quant = {quant!r}: unknown scheme{close_matches(quant, known)}; known: "
                           f"{', '.join(sorted(known))}")
    table = _CPU_SCHEMES if dev.type == "cpu" else _CUDA_SCHEMES
    if key not in table:
        why = _WHY_NOT.get((dev.type, key), "no kernel for it in the harness")
        raise HarnessError(f"quant = {quant!r} on {dev.type}: {why}; the harness runs "
                           f"{', '.join(table)} there")
    kernel, dtype, note = table[key]
    _check_kernel(kernel, dtype, dev, quant)
    # Quantized checkpoints keep embeddings and the LM head in 16 bits. The CPU's int8 kernels
    # take fp32 activations; its head runs in bf16 where the CPU has bf16 matmuls (emulated
    # bf16 is slower than fp32, so fp32 there).
    head = dtype
    if kernel == "int8-dynamic" and _cpu_has_bf16():
        head = torch.bfloat16
    return Scheme(quant=key, device=dev, kernel=kernel, act_dtype=dtype, head_dtype=head, note=note)


def _cpu_has_bf16() -> bool:
    """Whether oneDNN runs bf16 matmuls natively on this CPU (AVX512-BF16 or AMX)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def _check_kernel(kernel: str, dtype: torch.dtype, dev: torch.device, quant: str) -> None:
    """Fail early, in one line, where this torch build or this GPU lacks what ``kernel`` needs."""
    def need(ok: bool, what: str) -> None:
        if not ok:
            raise HarnessError(f"quant = {quant!r} on {dev}: {what} (torch {torch.__version__})")

    aten = torch.ops.aten
    if dev.type == "cuda":
        cc = torch.cuda.get_device_capability(dev)
        name = torch.cuda.get_device_name(dev)
        if dtype == torch.bfloat16:
            need(torch.cuda.is_bf16_supported(), f"{name} has no bf16 support")
        if kernel == "fp8-scaled-mm":
            need(hasattr(torch, "_scaled_mm") and hasattr(torch, "float8_e4m3fn"),
                 "torch._scaled_mm / torch.float8_e4m3fn are missing from this build")
            need(cc >= (8, 9), f"fp8 matmuls need compute capability >= 8.9; {name} is {cc[0]}.{cc[1]}")
        elif kernel == "int8-int-mm":
            need(hasattr(torch, "_int_mm"), "torch._int_mm is missing from this build")
            need(cc >= (7, 5), f"int8 tensor-core matmuls need compute capability >= 7.5; {name} is {cc[0]}.{cc[1]}")
        elif kernel == "int4-tinygemm":
            need(hasattr(aten, "_weight_int4pack_mm") and hasattr(aten, "_convert_weight_to_int4pack"),
                 "aten._weight_int4pack_mm / _convert_weight_to_int4pack are missing from this build")
            need(cc >= (8, 0), f"the int4 tinygemm kernel needs compute capability >= 8.0; {name} is "
                               f"{cc[0]}.{cc[1]}")
    else:
        if kernel == "int8-dynamic":
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    from torch.ao.quantization import quantize_dynamic  # noqa: F401
            except ImportError:
                need(False, "torch.ao.quantization.quantize_dynamic is missing from this build")
            need(bool(torch.backends.quantized.supported_engines),
                 "no quantized CPU engine (fbgemm, x86, onednn, qnnpack) in this build")
        elif kernel == "int4-tinygemm":
            need(hasattr(aten, "_weight_int4pack_mm_for_cpu") and hasattr(aten, "_convert_weight_to_int4pack_for_cpu"),
                 "aten._weight_int4pack_mm_for_cpu / _convert_weight_to_int4pack_for_cpu are missing from this build")


# -- linear layers ----------------------------------------------------------------------------------

class DenseLinear(nn.Module):
    """``F.linear`` at the activation precision (fp32, bf16, fp16)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, dtype: torch.dtype):
        super().__init__()
        self.weight = weight.to(dtype).contiguous()
        self.bias = None if bias is None else bias.to(dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)


class DynamicInt8Linear(nn.Module):
    """PyTorch's dynamically quantized linear on CPU (``quantize_dynamic`` of an ``nn.Linear``):
    qint8 weights with per-output-channel scales, activations quantized to int8 on every call,
    int8 matmul with int32 accumulation (fbgemm / onednn), fp32 in and out."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None):
        super().__init__()
        with warnings.catch_warnings():
            # torch.ao.quantization announces its own deprecation; it is still the CPU's int8 path.
            warnings.simplefilter("ignore")
            from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic
            out_f, in_f = weight.shape
            # skip_init: no kaiming init of a weight about to be replaced (seconds at 8B shapes).
            lin = nn.utils.skip_init(nn.Linear, in_f, out_f, bias=bias is not None)
            lin.weight = nn.Parameter(weight.float().contiguous(), requires_grad=False)
            if bias is not None:
                lin.bias = nn.Parameter(bias.float(), requires_grad=False)
            # inplace: no deep copy of the fp32 weight (a second per layer at 8B shapes).
            self.inner = quantize_dynamic(nn.Sequential(lin), {nn.Linear: per_channel_dynamic_qconfig},
                                          dtype=torch.qint8, inplace=True)[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x)


class Int8Linear(nn.Module):
    """W8A8 with ``torch._int_mm``: int8 weights with per-output-channel scales, activations
    quantized per token on each call, int32 accumulation, rescaled to the activation dtype."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, dtype: torch.dtype):
        super().__init__()
        out_f, in_f = weight.shape
        if in_f % 8 or out_f % 8:
            raise HarnessError(f"int8 linear of shape {out_f}x{in_f}: torch._int_mm needs both dimensions to "
                               f"be multiples of 8")
        w = weight.float()
        scale = w.abs().amax(dim=1).clamp(min=1e-12) / 127.0
        self.qweight = (w / scale[:, None]).round().clamp(-127, 127).to(torch.int8).contiguous()
        self.scale = scale.contiguous()
        self.dtype = dtype
        self.bias = None if bias is None else bias.to(dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = x.shape[0]
        xf = x.float()
        xs = xf.abs().amax(dim=1, keepdim=True).clamp(min=1e-12) / 127.0
        xq = (xf / xs).round().clamp(-127, 127).to(torch.int8)
        if x.is_cuda and m < _INT_MM_MIN_ROWS:
            xq = F.pad(xq, (0, 0, 0, _INT_MM_MIN_ROWS - m))
        # mat2 must be column-major: the transposed view of the row-major (out, in) weight.
        acc = torch._int_mm(xq, self.qweight.t())[:m]
        y = (acc.float() * xs * self.scale).to(self.dtype)
        return y if self.bias is None else y + self.bias


class Fp8Linear(nn.Module):
    """W8A8 fp8 (e4m3) with ``torch._scaled_mm``: weights with one per-tensor scale, activations
    scaled per tensor on each call (dynamic), output in the activation dtype."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, dtype: torch.dtype):
        super().__init__()
        out_f, in_f = weight.shape
        if in_f % 16 or out_f % 16:
            raise HarnessError(f"fp8 linear of shape {out_f}x{in_f}: torch._scaled_mm needs both dimensions to "
                               f"be multiples of 16")
        w = weight.float()
        self.scale = (w.abs().amax().clamp(min=1e-12) / _E4M3_MAX).reshape(())
        self.qweight = (w / self.scale).clamp(-_E4M3_MAX, _E4M3_MAX).to(torch.float8_e4m3fn).contiguous()
        self.dtype = dtype
        self.bias = None if bias is None else bias.to(dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xs = (x.abs().amax().float().clamp(min=1e-12) / _E4M3_MAX).reshape(())
        xq = (x.float() / xs).clamp(-_E4M3_MAX, _E4M3_MAX).to(torch.float8_e4m3fn)
        y = torch._scaled_mm(xq, self.qweight.t(), scale_a=xs, scale_b=self.scale, out_dtype=self.dtype)
        if isinstance(y, tuple):  # torch < 2.5 returned (out, amax)
            y = y[0]
        return y if self.bias is None else y + self.bias


def quantize_int4_groups(weight: torch.Tensor,
                         group: int = INT4_GROUP) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Asymmetric 4-bit quantization of an ``(out, in)`` weight in groups of ``group`` along
    ``in``: codes 0..15 (int32, same shape), scales and tinygemm-style zeros ``(out, in/group)``
    such that ``w ≈ (code − 8)·scale + zero``."""
    out_f, in_f = weight.shape
    g = weight.float().reshape(-1, group)
    lo, hi = g.amin(dim=1, keepdim=True), g.amax(dim=1, keepdim=True)
    scale = (hi - lo).clamp(min=1e-6) / 15.0
    zero = lo + 8.0 * scale
    codes = ((g - lo) / scale).round().clamp(0, 15).to(torch.int32).reshape(out_f, in_f)
    return codes, scale.reshape(out_f, -1), zero.reshape(out_f, -1)


class Int4Linear(nn.Module):
    """Weight-only int4 (AWQ/GPTQ layout: groups of 128 along the input, a scale and a zero point
    per group) on PyTorch's tinygemm kernels: ``_weight_int4pack_mm`` on CUDA,
    ``_weight_int4pack_mm_for_cpu`` on CPU. Activations and output stay bf16."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, dtype: torch.dtype):
        super().__init__()
        out_f, in_f = weight.shape
        if in_f % (_INT4_INNER_K_TILES * 16) or in_f % INT4_GROUP or out_f % 8:
            raise HarnessError(f"int4 linear of shape {out_f}x{in_f}: the tinygemm layout needs in_features to be "
                               f"a multiple of {max(_INT4_INNER_K_TILES * 16, INT4_GROUP)} and out_features of 8")
        codes, scale, zero = quantize_int4_groups(weight)
        # (in/group, out, 2): the scale and zero of one group sit together (one 32-bit load).
        self.scales_zeros = torch.stack([scale, zero], dim=2).transpose(0, 1).contiguous().to(dtype)
        aten = torch.ops.aten
        if weight.is_cuda:
            # Two codes per byte, the even column in the high nibble.
            packed = (codes[:, ::2] << 4 | codes[:, 1::2]).to(torch.uint8)
            self.packed = aten._convert_weight_to_int4pack(packed, _INT4_INNER_K_TILES)
            self._mm = aten._weight_int4pack_mm
        else:
            self.packed = aten._convert_weight_to_int4pack_for_cpu(codes, _INT4_INNER_K_TILES)
            self._mm = aten._weight_int4pack_mm_for_cpu
        self.dtype = dtype
        self.bias = None if bias is None else bias.to(dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self._mm(x, self.packed, INT4_GROUP, self.scales_zeros)
        return y if self.bias is None else y + self.bias


def make_linear(weight: torch.Tensor, bias: torch.Tensor | None, kernel: str, dtype: torch.dtype) -> nn.Module:
    """A linear layer computing ``x @ weight.T + bias`` on ``kernel`` (one of :data:`KERNELS`)
    from an fp32 ``(out, in)`` weight on the target device; it takes and returns 2-D ``dtype``
    activations (fp32 for ``int8-dynamic``, whose kernels take fp32)."""
    if kernel == "dense":
        return DenseLinear(weight, bias, dtype)
    if kernel == "int8-dynamic":
        if weight.is_cuda:
            raise HarnessError("kernel = 'int8-dynamic': PyTorch's dynamic quantization runs on CPU only")
        return DynamicInt8Linear(weight, bias)
    if kernel == "int8-int-mm":
        return Int8Linear(weight, bias, dtype)
    if kernel == "fp8-scaled-mm":
        return Fp8Linear(weight, bias, dtype)
    if kernel == "int4-tinygemm":
        return Int4Linear(weight, bias, dtype)
    raise HarnessError(f"kernel = {kernel!r}: unknown; known: {', '.join(KERNELS)}")


# -- KV cache -----------------------------------------------------------------------------------------

class KVCache:
    """Keys and values of ``layers`` layers, allocated once as one flat buffer per layer and
    viewed as ``(batch, kv_heads, length, head_dim)`` for each step shape (:meth:`reshape`), so
    that a grid of shapes shares one allocation and timing never includes allocation.

    The buffers are filled once with a repeated random tile (fresh memory is touched here, not
    in the first timed step, and holds no NaN or denormals that would skew CPU timings)."""

    def __init__(self, layers: int, kv_heads: int, head_dim: int, capacity_tokens: int, dtype: torch.dtype,
                 device: torch.device, seed: int = 0):
        if capacity_tokens < 1:
            raise HarnessError(f"capacity_tokens = {capacity_tokens}: a KV cache holds at least one token")
        self.kv_heads, self.head_dim, self.capacity_tokens = kv_heads, head_dim, capacity_tokens
        per_token = kv_heads * head_dim
        gen = torch.Generator(device="cpu").manual_seed(seed)
        tile = (torch.rand(per_token, generator=gen) * 2 - 1).to(dtype=dtype, device=device)
        self._flat: list[tuple[torch.Tensor, torch.Tensor]] = []
        for _ in range(layers):
            k = torch.empty(capacity_tokens * per_token, dtype=dtype, device=device)
            v = torch.empty_like(k)
            k.view(capacity_tokens, per_token).copy_(tile.expand(capacity_tokens, per_token))
            v.view(capacity_tokens, per_token).copy_(tile.expand(capacity_tokens, per_token))
            self._flat.append((k, v))
        self.batch = 0
        self.length = 0
        self.k: list[torch.Tensor] = []
        self.v: list[torch.Tensor] = []
        self.reshape(1, capacity_tokens)

    @property
    def layers(self) -> int:
        return len(self._flat)

    @property
    def nbytes(self) -> int:
        """Bytes held by keys and values of every layer."""
        return sum(k.numel() * k.element_size() * 2 for k, _ in self._flat)

    def reshape(self, batch: int, length: int) -> KVCache:
        """View the buffers as ``batch`` sequences of ``length`` positions each (no copy);
        returns self. HarnessError if ``batch * length`` exceeds the capacity."""
        if batch < 1 or length < 1:
            raise HarnessError(f"KV cache shape batch = {batch}, length = {length}: both must be >= 1")
        if batch * length > self.capacity_tokens:
            raise HarnessError(f"KV cache shape batch = {batch}, length = {length}: {batch * length} tokens "
                               f"exceed the capacity of {self.capacity_tokens}")
        n = batch * length * self.kv_heads * self.head_dim
        shape = (batch, self.kv_heads, length, self.head_dim)
        self.k = [k[:n].view(shape) for k, _ in self._flat]
        self.v = [v[:n].view(shape) for _, v in self._flat]
        self.batch, self.length = batch, length
        return self


# -- the decoder ---------------------------------------------------------------------------------------

def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary embedding (the "rotate half" form of Llama's Hugging Face checkpoints) of
    ``x``: (batch, tokens, heads, head_dim), with cos/sin: (tokens, head_dim)."""
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos[:, None, :] + rotated * sin[:, None, :]


_CPU_FLASH = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)


def chunk_attention(q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, start: int) -> torch.Tensor:
    """Attention of a prefill chunk: ``q`` (batch, heads, c, d) at positions ``start`` ..
    ``start + c − 1`` over ``keys``/``values`` (batch, kv_heads, start + c, d), causal with the
    diagonal at the bottom right (GQA: query head h reads KV head h // (heads / kv_heads)).

    Why not one masked SDPA call: on the CPU, an explicit mask sends SDPA down a path that
    computes every (query, key) pair of the rectangle, so a chunk at an offset cost ~2× the
    pairs it needs (2048 tokens after 512 cached: 204 ms against 125 ms, one layer of
    Llama-3.2-1B), and serving engines, whose kernels skip masked blocks, cost what the pairs
    cost. So the CPU runs it as engines do: the cached prefix without a mask (the query heads of
    each KV head stacked as that head's rows), the chunk causally, merged by their log-sum-exp.
    CUDA's kernels handle the bottom-right causal mask natively and skip its masked blocks."""
    c = q.shape[2]
    if start == 0:
        return F.scaled_dot_product_attention(q, keys, values, is_causal=True, enable_gqa=True)
    if q.device.type != "cpu" or _CPU_FLASH is None:
        return F.scaled_dot_product_attention(q, keys, values, attn_mask=causal_lower_right(c, start + c),
                                              enable_gqa=True)
    b, nh, _, d = q.shape
    nkv = keys.shape[1]
    group = nh // nkv
    # The cached prefix: every query sees all of it, so the group's heads share one unmasked pass.
    out_p, lse_p = _CPU_FLASH(q.reshape(b, nkv, group * c, d), keys[:, :, :start], values[:, :, :start])
    out_p, lse_p = out_p.reshape(b, nh, c, d), lse_p.reshape(b, nh, c)
    # The chunk itself: causal (top-left and bottom-right coincide on a square).
    kc, vc = keys[:, :, start:], values[:, :, start:]
    if group > 1:
        kc, vc = kc.repeat_interleave(group, dim=1), vc.repeat_interleave(group, dim=1)
    out_c, lse_c = _CPU_FLASH(q, kc, vc, is_causal=True)
    lse = torch.logaddexp(lse_p, lse_c)
    w_p = (lse_p - lse).exp().unsqueeze(-1)
    w_c = (lse_c - lse).exp().unsqueeze(-1)
    return (out_p.float() * w_p + out_c.float() * w_c).to(q.dtype)


class DecoderLayer(nn.Module):
    """One Llama layer: RMSNorm, fused QKV, rotary, GQA attention over the KV cache, output
    projection, residual; RMSNorm, fused gate/up, SiLU gate, down projection, residual."""

    def __init__(self, arch: ModelArch, weights: dict[str, torch.Tensor], scheme: Scheme):
        super().__init__()
        self.hidden, self.heads, self.kv_heads, self.head_dim = arch.hidden, arch.heads, arch.kv_heads, arch.head_dim
        self.group = arch.heads // arch.kv_heads
        dt = scheme.act_dtype
        self.input_norm = weights["input_norm"].to(dt)
        self.post_norm = weights["post_norm"].to(dt)
        self.qkv = make_linear(weights["qkv"], weights.get("qkv_bias"), scheme.kernel, dt)
        self.o = make_linear(weights["o"], None, scheme.kernel, dt)
        self.gate_up = make_linear(weights["gate_up"], None, scheme.kernel, dt)
        self.down = make_linear(weights["down"], None, scheme.kernel, dt)

    def forward(self, x: torch.Tensor, start: int, cos: torch.Tensor, sin: torch.Tensor, k_cache: torch.Tensor,
                v_cache: torch.Tensor) -> torch.Tensor:
        """``x``: (batch, tokens, hidden) at positions ``start`` .. ``start + tokens - 1`` of
        every sequence; writes their keys and values into the caches and returns the new ``x``."""
        b, c, hidden = x.shape
        nh, nkv, d = self.heads, self.kv_heads, self.head_dim
        h = F.rms_norm(x, (hidden,), self.input_norm, RMS_EPS)
        qkv = self.qkv(h.view(b * c, hidden)).view(b, c, nh + 2 * nkv, d)
        q, k, v = qkv.split((nh, nkv, nkv), dim=2)
        q, k = _rotate(q, cos, sin), _rotate(k, cos, sin)
        end = start + c
        k_cache[:, :, start:end] = k.transpose(1, 2)
        v_cache[:, :, start:end] = v.transpose(1, 2)
        keys, values = k_cache[:, :, :end], v_cache[:, :, :end]
        if c == 1:
            # Decode: the query heads sharing a KV head become that head's query rows, so one
            # unmasked attention per KV head reads the cache once (no repeated K/V, no mask).
            o = F.scaled_dot_product_attention(q.reshape(b, nkv, self.group, d), keys, values)
            o = o.reshape(b, nh * d)
        else:
            o = chunk_attention(q.transpose(1, 2), keys, values, start)
            o = o.transpose(1, 2).reshape(b * c, nh * d)
        x = x + self.o(o).view(b, c, hidden)
        h = F.rms_norm(x, (hidden,), self.post_norm, RMS_EPS)
        gate, up = self.gate_up(h.view(b * c, hidden)).chunk(2, dim=-1)
        return x + self.down(F.silu(gate) * up).view(b, c, hidden)


class LlamaDecoder(nn.Module):
    """A Llama-architecture decoder at ``arch``'s shapes with ``len(self.layers)`` layers,
    running one engine step per call: ``forward(tokens, start, cache)`` computes ``tokens``
    (batch, c) at positions ``start`` .. ``start + c − 1`` of every sequence (a prefill chunk,
    or a decode step when c = 1) and returns the logits of each sequence's last position."""

    def __init__(self, arch: ModelArch, scheme: Scheme, embed: torch.Tensor, head: torch.Tensor,
                 norm: torch.Tensor, layers: list[DecoderLayer]):
        super().__init__()
        self.arch, self.scheme = arch, scheme
        tied = head is embed
        self.embed = embed.to(scheme.head_dtype)
        # The head stays unquantized, in 16 bits for quantized schemes (tied: the embedding itself).
        self.head = None if tied else DenseLinear(head, None, scheme.head_dtype)
        self.norm = norm.to(scheme.head_dtype)
        self.layers = nn.ModuleList(layers)
        self._cos = torch.empty(0, arch.head_dim, dtype=scheme.act_dtype, device=scheme.device)
        self._sin = self._cos

    @property
    def device(self) -> torch.device:
        return self.scheme.device

    def new_cache(self, capacity_tokens: int, seed: int = 0) -> KVCache:
        """A KV cache for every built layer holding ``capacity_tokens`` tokens in all."""
        return KVCache(len(self.layers), self.arch.kv_heads, self.arch.head_dim, capacity_tokens,
                       self.scheme.act_dtype, self.device, seed=seed)

    def kv_bytes_per_token(self) -> int:
        """Bytes of K and V one cached token takes over every built layer."""
        elem = torch.empty(0, dtype=self.scheme.act_dtype).element_size()
        return 2 * len(self.layers) * self.arch.kv_heads * self.arch.head_dim * elem

    def rope(self, start: int, count: int) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sin of positions ``start`` .. ``start + count − 1``; the table grows (by
        doubling, outside the timed steps once warmed up) when a position is past its end."""
        end = start + count
        if end > self._cos.shape[0]:
            n = max(end, 2 * self._cos.shape[0], 1024)
            d = self.arch.head_dim
            inv = 1.0 / ROPE_THETA ** (torch.arange(0, d, 2, dtype=torch.float64, device=self.device) / d)
            angles = torch.outer(torch.arange(n, dtype=torch.float64, device=self.device), inv)
            angles = torch.cat((angles, angles), dim=-1)
            self._cos = angles.cos().to(self.scheme.act_dtype)
            self._sin = angles.sin().to(self.scheme.act_dtype)
        return self._cos[start:end], self._sin[start:end]

    def forward(self, tokens: torch.Tensor, start: int, cache: KVCache, layers: int | None = None) -> torch.Tensor:
        """Logits (batch, vocab) of the last position of each sequence after computing
        ``tokens`` (batch, c) at positions ``start`` onward, through the first ``layers``
        layers (all built layers by default), with keys and values read from and written to
        ``cache`` (shaped ``(batch, ·)`` with room for ``start + c`` positions)."""
        b, c = tokens.shape
        n = len(self.layers) if layers is None else layers
        if not 1 <= n <= len(self.layers):
            raise HarnessError(f"layers = {layers}: must be between 1 and the {len(self.layers)} layers built")
        if cache.batch != b or cache.length < start + c or cache.layers < n:
            raise HarnessError(f"KV cache shaped ({cache.batch} sequences, {cache.length} positions, {cache.layers} "
                               f"layers) cannot hold {b} sequences at positions {start}..{start + c - 1} over {n} "
                               f"layers: call cache.reshape(batch, length) first")
        cos, sin = self.rope(start, c)
        x = F.embedding(tokens, self.embed).to(self.scheme.act_dtype)
        for i in range(n):
            x = self.layers[i](x, start, cos, sin, cache.k[i], cache.v[i])
        last = F.rms_norm(x[:, -1].to(self.scheme.head_dtype), (self.arch.hidden,), self.norm, RMS_EPS)
        return self.lm_head(last)

    def lm_head(self, last: torch.Tensor) -> torch.Tensor:
        """Logits (sequences, vocab) of the normed last positions ``last`` (sequences, hidden).

        On the CPU one matrix-vector product per sequence, so the head costs the same for each
        sequence (c_head·S in the step-time formula). PyTorch's fp32 GEMM (MKL) does exactly that
        for up to four rows, then switches to a packed GEMM, so on one AVX2 core Llama-3.2-1B's
        1 GB fp32 head took 55, 110, 180, 245, 260 and 260 ms for 1, 2, 3, 4, 6 and 8 sequences:
        a staircase the formula (t0 + max(head_w, c_head·S)) cannot follow, which mispriced the
        real serving loop's iterations by 20-50% (the oneDNN and OpenBLAS paths measured no
        flatter). On CUDA one GEMM (cuBLAS reads the weights once for a small batch: the head_w
        roof)."""
        head = (lambda rows: F.linear(rows, self.embed)) if self.head is None else self.head
        if self.device.type != "cpu" or last.shape[0] == 1:
            return head(last)
        return torch.cat([head(row) for row in last.split(1)])


def _stream(seed: int, *key: int) -> torch.Generator:
    """A CPU generator for one tensor, derived from the seed and the tensor's identity."""
    state = np.random.SeedSequence([seed, *key]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator(device="cpu").manual_seed(int(state) & ((1 << 63) - 1))


# Tensors larger than this many elements repeat a random block of this length (a prime, so that
# rows of any width start at different offsets of it): drawing 100M+ values one by one from a
# seeded generator costs seconds per tensor on a CPU, and no kernel's speed depends on the values.
_RANDOM_BLOCK = 4_194_301


def _uniform(shape: tuple[int, ...], std: float, gen: torch.Generator, device: torch.device) -> torch.Tensor:
    """fp32 uniform noise of standard deviation ``std`` on ``device``, drawn from ``gen``
    (uniform: faster than normal, and the kernels do not care); tensors beyond
    ``_RANDOM_BLOCK`` elements tile one random block."""
    a = std * math.sqrt(3.0)
    n = math.prod(shape)
    if n <= _RANDOM_BLOCK:
        return torch.empty(shape, dtype=torch.float32).uniform_(-a, a, generator=gen).to(device)
    block = torch.empty(_RANDOM_BLOCK, dtype=torch.float32).uniform_(-a, a, generator=gen).to(device)
    out = torch.empty(n, dtype=torch.float32, device=device)
    whole = n // _RANDOM_BLOCK
    out[:whole * _RANDOM_BLOCK].view(whole, _RANDOM_BLOCK).copy_(block.expand(whole, _RANDOM_BLOCK))
    out[whole * _RANDOM_BLOCK:] = block[:n - whole * _RANDOM_BLOCK]
    return out.view(shape)


def build_model(model: ModelArch | str, quant: str = "fp32", device: str | torch.device = "cpu",
                layers: int | None = None, seed: int = 0) -> LlamaDecoder:
    """A :class:`LlamaDecoder` at the shapes of ``model`` (a catalog key or a ModelArch) with
    ``layers`` layers (all of the model's by default), seeded random weights, and linear layers
    on the kernels ``quant`` resolves to on ``device`` (:func:`resolve_scheme`).

    Weights are drawn one layer at a time in fp32 and quantized before the next, so the peak
    memory is the quantized model plus one fp32 layer."""
    arch = MODELS[model] if isinstance(model, str) else model
    if arch.is_moe:
        raise HarnessError(f"model = {arch.key!r}: a mixture of experts ({arch.experts} experts); the harness "
                           f"builds dense Llama-architecture decoders only")
    n = arch.layers if layers is None else layers
    if not isinstance(n, int) or not 1 <= n <= arch.layers:
        raise HarnessError(f"layers = {layers!r}: must be an integer from 1 to the {arch.layers} layers of "
                           f"{arch.key}")
    scheme = resolve_scheme(quant, device)
    dev = scheme.device
    h, d, nh, nkv, inter = arch.hidden, arch.head_dim, arch.heads, arch.kv_heads, arch.intermediate
    with torch.inference_mode(False), torch.no_grad():
        hd = scheme.head_dtype
        embed = _uniform((arch.vocab, h), 1.0, _stream(seed, 0, 0), dev).to(hd)
        head = embed if arch.tied_embeddings else _uniform((arch.vocab, h), h ** -0.5, _stream(seed, 0, 1), dev).to(hd)
        norm = torch.ones(h, dtype=hd, device=dev)
        built: list[DecoderLayer] = []
        for i in range(n):
            weights = {
                "input_norm": torch.ones(h, device=dev),
                "post_norm": torch.ones(h, device=dev),
                "qkv": _uniform(((nh + 2 * nkv) * d, h), h ** -0.5, _stream(seed, i + 1, 0), dev),
                "o": _uniform((h, nh * d), (nh * d) ** -0.5, _stream(seed, i + 1, 1), dev),
                "gate_up": _uniform((2 * inter, h), h ** -0.5, _stream(seed, i + 1, 2), dev),
                "down": _uniform((h, inter), inter ** -0.5, _stream(seed, i + 1, 3), dev),
            }
            if arch.attention_bias:
                weights["qkv_bias"] = _uniform(((nh + 2 * nkv) * d,), 0.02, _stream(seed, i + 1, 4), dev)
            try:
                built.append(DecoderLayer(arch, weights, scheme))
            except RuntimeError as e:  # a kernel this device or build refuses, in one line
                raise HarnessError(f"quant = {quant!r} on {dev}: building layer {i} failed: "
                                   f"{str(e).splitlines()[0]}") from None
            del weights
    decoder = LlamaDecoder(arch, scheme, embed, head, norm, built).eval()
    _smoke(decoder, quant)
    return decoder


def _smoke(decoder: LlamaDecoder, quant: str) -> None:
    """Run one tiny step so that a kernel this GPU or build refuses fails here, in one line,
    rather than in the middle of a measurement."""
    cache = decoder.new_cache(2)
    tokens = torch.zeros(1, 2, dtype=torch.long, device=decoder.device)
    try:
        with torch.inference_mode():
            decoder(tokens, 0, cache, layers=1)
            decoder(tokens[:, :1], 1, cache.reshape(1, 2), layers=1)
    except RuntimeError as e:
        raise HarnessError(f"quant = {quant!r} on {decoder.device}: a test step failed: "
                           f"{str(e).splitlines()[0]}") from None
