"""torchvision: every builder of ``torchvision.models`` (classification, detection, keypoints,
segmentation, video, optical flow, quantized) and every member of its Weights enums.

``cards`` reads ``WeightsEnum.meta`` and ``weights.transforms()``; ``build`` calls the real
builders (so every weights-dependent choice upstream makes is kept); ``heads`` gives detection,
segmentation and video models a head of another class count; ``features`` makes
``features_only`` extractors.
"""
