"""tsmlib: label-free saliency maps for CNNs."""
