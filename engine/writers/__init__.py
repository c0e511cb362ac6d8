"""Writers: one opened source in, one artifact on disk out.

Offers: original-format tensors and single files (`original`), the GGUF every consumer loads
(`gguf_writer`, its keep rules in `gguf_rules`, the whole artifact in `gguf_artifact`),
ComfyUI-GGUF's own layout (`comfy_gguf`, `gguf_layout`), and diffusers-quantized folders with
their loader (`diffusers_quant`). Writers know nothing of the variant registry or validation.
"""
