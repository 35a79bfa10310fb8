"""The ablation's model variants and their parameter-count matching.

The five rows of the paper's ablation (its Table 6 and the Al-Rfou et al. baseline):

=============  =========  ==========  ==========================================================
name           attn_type  recurrence  what it is
=============  =========  ==========  ==========================================================
xl             0          yes         Transformer-XL: relative encoding (R, u, v) + memory
xl-norec       0          no          the same, trained on independent segments
shaw           1          yes         Shaw et al. learnable relative embeddings + memory
vanilla        2          no          absolute sinusoid at the input, fixed segments (baseline)
al-rfou        3          no          Al-Rfou et al. learnable absolute positions, every layer
=============  =========  ==========  ==========================================================

The encodings carry different numbers of parameters (the position projection of ``xl``, the
per-layer tables of ``shaw`` and ``al-rfou``); :func:`match_parameters` gives each variant the
``d_inner`` that brings its count closest to the reference's (``xl``).
"""

from __future__ import annotations

from dataclasses import dataclass

from transformer_xl.config import TransformerXLConfig
from transformer_xl.model.transformer import count_parameters


@dataclass(frozen=True)
class Variant:
    name: str
    attn_type: int
    recurrence: bool
    label: str

    @property
    def relative(self) -> bool:
        """Relative encodings read any attention length; absolute ones only the trained one."""
        return self.attn_type in (0, 1)


VARIANTS = (
    Variant("xl", 0, True, "Transformer-XL (relative + recurrence)"),
    Variant("xl-norec", 0, False, "Transformer-XL encoding, no recurrence"),
    Variant("shaw", 1, True, "Shaw et al. relative + recurrence"),
    Variant("vanilla", 2, False, "vanilla absolute, no memory (baseline)"),
    Variant("al-rfou", 3, False, "Al-Rfou et al. per-layer absolute, no memory"),
)
BY_NAME = {v.name: v for v in VARIANTS}
TOLERANCE = 0.02


def variant_config(base: TransformerXLConfig, v: Variant, mem_len: int) -> TransformerXLConfig:
    """``base`` with the variant's encoding; ``mem_len`` is the training memory (0 without
    recurrence), which also sizes the learnable position tables."""
    memory = base.segment.replace(mem_len=mem_len if v.recurrence else 0)
    return base.replace(attn_type=v.attn_type, segment=memory)


def match_parameters(
    base: TransformerXLConfig, variants=VARIANTS, *, mem_len: int, reference: str = "xl"
) -> dict[str, tuple[TransformerXLConfig, int]]:
    """``{name: (config, parameters)}`` with each variant's ``d_inner`` chosen so that its
    parameter count is as close as possible to the reference variant's; raises when one cannot
    be brought within :data:`TOLERANCE`."""
    ref_cfg = variant_config(base, BY_NAME[reference], mem_len)
    target = count_parameters(ref_cfg)
    per_unit = base.n_layer * (2 * base.d_model + 1)  # fc1 column + bias + fc2 row
    out = {}
    for v in variants:
        cfg = variant_config(base, v, mem_len)
        n = count_parameters(cfg)
        d_inner = max(1, cfg.d_inner + round((target - n) / per_unit))
        if d_inner != cfg.d_inner:
            cfg = cfg.replace(d_inner=d_inner)
            n = count_parameters(cfg)
        if abs(n - target) > TOLERANCE * target:
            raise ValueError(
                f"variant {v.name}: {n:,} parameters cannot be matched to {reference}'s "
                f"{target:,} within {TOLERANCE:.0%} by d_inner (make d_inner larger)"
            )
        out[v.name] = (cfg, n)
    return out
