"""The frozen base model: loaded from a folder or the hub (``base``), its parts found per architecture
(``architectures``), its classification head's pooling (``pooling``), and its bit width (``quantize``)."""
