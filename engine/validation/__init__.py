"""Validation: prove an artifact with its consumer's own loader against the source's outputs.

One module per job: `context` (the opened source, the fp32 reference cache, which checks are
exact copies), `exact` (byte proofs), `original`, `gguf_file` (+ `gguf_tensors`,
`diffusers_gguf`), `comfy_gguf` and `diffusers_quant` (one per artifact family), `outputs`
(metrics against the reference), `probe` (the seeded forward passes), `loaders` (the consumers'
loaders), `thresholds` (the calibrated gates) and `grid` (the picture of the outputs).

Each validator takes the file(s) it checks and a `Check` (what to expect of them), never the
variant registry: `engine.run` stands above validation and hands each variant's check down.
"""
