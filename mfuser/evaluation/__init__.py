"""Multi-domain semantic-segmentation evaluation."""
