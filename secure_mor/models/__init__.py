"""Vision-language models: the tiny Qwen2-VL built offline, loading of any HF VLM, pretraining, eval.

Import from the submodules (``secure_mor.models.factory``, ``.pretrain``, ``.evaluate``, …): this
package stays empty so that light imports (e.g. the presets for ``--help``) do not load torch.
"""
