"""The CPU decode engine: the fixed-shape decode step exported once per model to ONNX and
run by ONNX Runtime (``step_graph.py`` what is exported, ``export.py`` export + quantize +
cache, ``session.py`` the runtime side). Optional: needs the ``cpu_engine`` extra."""
