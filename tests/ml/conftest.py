"""Shared setup for the ML tests: keep TensorFlow's C++ logging quiet (TF is imported lazily by tests)."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
