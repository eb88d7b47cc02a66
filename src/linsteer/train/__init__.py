"""Post-training alternatives to steering, measured on the same items: LoRA SFT."""
