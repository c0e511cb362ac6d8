"""The files unetbot reads and writes, with no knowledge of models: the ground floor.

Offers: safetensors headers, byte-range reads and range-copying writes (`safetensors_io`), tensor
values and float casts in NumPy (`tensor_values`, `float_casts`), GGUF block quantizers with
their C kernel (`gguf_quants`, `gguf_numpy_quants`, `_gguf_kernels.c`), bounded JSON reading
(`config_json`), atomic output files and kernel copies (`fsio`), sha256 while writing
(`output_hash`), and `manifest.json` with each artifact's validation record (`manifest`,
`validation_record`). Imports nothing from the rest of the engine but its errors.
"""
