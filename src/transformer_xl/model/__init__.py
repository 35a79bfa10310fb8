from transformer_xl.model.transformer import LMOutput, TransformerXLLM

__all__ = ["LMOutput", "TransformerXLLM"]
