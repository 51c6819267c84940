"""Neural-network modules of VidTok: shared layers, causal (v1.0/v1.1) and non-causal encoders/decoders, FSQ and KL."""
