"""Torch sequence models over windows of past bars (one module per network).

``lstm`` (unified LSTM), ``attention_lstm``, ``transformer`` (causal) and
``multiscale`` (hybrid multi-scale LSTM) share the training loop and the
``TorchFrameModel`` base of ``loop``; ``windows`` builds the index-based
windows. Made by name through ``ml_core.models.base.MODEL_FACTORIES``.
"""
