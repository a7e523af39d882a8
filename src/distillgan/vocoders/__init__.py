"""Vocoders that turn the project's mel into audio: per-model HiFi-GAN and the universal BigVGAN-v2."""
