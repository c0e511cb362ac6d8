"""The source side: what a folder holds, checked before anything is written.

Offers: the repo layout and which files hold the weights (`repo_kind`, `layout`), the config
schema and the tensor shapes a config implies (`config_schema`, `expected_shapes`), the
classification of a UNet (SD1.5, LCM, inpaint: `classify`), per-component header checks
(`component_check`), the diffusers <-> original key map (`keymap`), matching an original
checkpoint against a UNet (`checkpoint_match`), one opened folder (`folder.Source`) and the
folder opened once per weight set (`weight_sets.WeightSets`), which is what travels through a
run.
"""
