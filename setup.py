"""Build of the optional C quantizer `engine.formats._gguf_kernels`.

The metadata lives in pyproject.toml.

The extension is optional: where it does not compile (no C compiler, not x86-64),
`engine.formats.gguf_quants` uses its NumPy quantizer, which gives the same bytes, only slower.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "engine.formats._gguf_kernels",
            ["engine/formats/_gguf_kernels.c"],
            # IEEE float32 exactly as NumPy computes it: no FMA contraction, never -ffast-math,
            # and no -march, so the module runs on every x86-64 CPU (SSE2 baseline).
            extra_compile_args=["-O3", "-ffp-contract=off", "-fno-fast-math"],
            optional=True,
        )
    ]
)
