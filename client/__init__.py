"""The data owner's trust domain: private preference data, its DP reward model, its privacy ledger.

Never imports ``secure_mor.server``; never holds the CKKS secret key. Modules: ``config`` (the
client's frozen config), ``compact`` and ``lora_vlm`` (the two reward-model architectures),
``reward_model`` (scoring into [0, 1], calibration, save/load), ``bt_loss`` (the Bradley–Terry loss),
``public_init`` (the compact model's cached pretraining on public pairs, no privacy cost), ``training``
(DP-SGD with Opacus), ``ledger`` (the signed privacy ledger and its budget), ``run`` (``secure-mor
client train-rm``), ``tasks`` and ``agent`` (the encrypted scoring agent, ``secure-mor client join``),
``errors``.
"""
