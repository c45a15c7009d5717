"""match stage: training-free pairing of look-alike photos by embedding similarity."""

# Measured on the SockSort sample with EfficientNet-Lite0 features: same-sock pairs have cosine
# 0.49..0.90 (mean 0.69), different socks 0.46 on average; 0.45 keeps every same-sock pair.
DEFAULT_MIN_SIMILARITY = 0.45
